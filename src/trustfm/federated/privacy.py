"""Client-level differential privacy across rounds: update clipping, Gaussian noise, and its accountant.

Two placements (``federated.client_dp.mode``):

- ``server`` (central DP, DP-FedAvg of McMahan et al., ICLR 2018): the server clips each sampled client's update
  (new minus global weights) to L2 norm ``C``, averages them with the fixed denominator ``m = q N`` (the expected
  number of sampled clients) and adds N(0, (sigma C / m)^2) to every coordinate. Adding or removing one client
  moves that mean by at most ``C / m``, so each round is a Gaussian mechanism with noise multiplier ``sigma``,
  subsampled with rate ``q`` when clients are drawn independently (Poisson) with probability ``q``. The server is
  trusted to add the noise; mean aggregation only (a median's sensitivity is not ``C / m``).
- ``local``: each client clips its own update to ``C`` and adds N(0, (2 sigma C)^2) before sending it: replacing
  all of a client's data moves its clipped update by at most ``2 C``, so each round it takes part in is a Gaussian
  mechanism with noise multiplier ``sigma`` against everyone, the server included, and any aggregation rule
  (median, trimmed mean, Krum) is post-processing that keeps it. There is no subsampling credit (a client knows
  when it is asked).

The accountant composes the rounds with Opacus's RDP accountant (the same one DP-SGD uses), so one ledger holds
both kinds of spending.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

from trustfm.errors import ConfigError


def default_client_delta(clients: int) -> float:
    """A power of ten at most 1 / (10 x clients): delta is the chance that the guarantee fails for some client."""
    return float(10.0 ** np.floor(np.log10(1.0 / (10.0 * clients))))


def client_level_epsilon(*, noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """Epsilon of ``rounds`` Gaussian releases with noise multiplier ``noise_multiplier`` (sigma), each over a
    Poisson sample of clients with rate ``sample_rate`` (1: every client every round), at ``delta`` (RDP)."""
    from trustfm._deps import optional_import

    accountants = optional_import("opacus.accountants", "privacy")
    if rounds <= 0:
        return 0.0
    accountant = accountants.RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, rounds)]
    return float(accountant.get_epsilon(delta=delta))


def update_norm(update: dict[str, torch.Tensor]) -> float:
    """L2 norm of an update over all of its tensors together."""
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in update.values())))


def clip_update(update: dict[str, torch.Tensor], clipping_norm: float) -> dict[str, torch.Tensor]:
    """``update`` scaled down to L2 norm at most ``clipping_norm`` (unchanged when already within it)."""
    norm = update_norm(update)
    factor = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return {k: t * factor for k, t in update.items()}


def add_gaussian_noise(update: dict[str, torch.Tensor], std: float) -> dict[str, torch.Tensor]:
    """``update`` plus N(0, std^2) in every coordinate, from a generator seeded by the OS's secret randomness:
    noise an observer could regenerate would protect nothing."""
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    return {k: t + torch.randn(t.shape, generator=generator, dtype=t.dtype) * std for k, t in update.items()}


def privatise_local_update(update: dict[str, torch.Tensor], *, noise_multiplier: float,
                           clipping_norm: float) -> dict[str, torch.Tensor]:
    """``local`` mode, on the client: clip to ``C``, then add N(0, (2 sigma C)^2) (sensitivity 2C, see above)."""
    return add_gaussian_noise(clip_update(update, clipping_norm), 2.0 * noise_multiplier * clipping_norm)


def private_mean(updates: list[dict[str, torch.Tensor]], *, template: dict[str, torch.Tensor],
                 expected_clients: float, noise_multiplier: float, clipping_norm: float) -> dict[str, torch.Tensor]:
    """``server`` mode: the clipped updates summed, divided by ``expected_clients`` (not by how many came: the
    count itself depends on who was sampled), plus N(0, (sigma C / expected_clients)^2). ``template`` (the global
    weights) gives the tensors' names and shapes, so a round nobody answered still releases noise of its own."""
    if expected_clients <= 0:
        raise ConfigError("client-level DP needs at least one expected client per round")
    total = {k: torch.zeros_like(t) for k, t in template.items()}
    for update in updates:
        for k, t in clip_update(update, clipping_norm).items():
            total[k] += t
    total = {k: t / expected_clients for k, t in total.items()}
    return add_gaussian_noise(total, noise_multiplier * clipping_norm / expected_clients)
