"""Canary clients: the one-run privacy audit (Steinke, Nasr & Jagielski, NeurIPS 2023) of client-level DP.

Client-level DP promises that the global model shows little of any one client. A canary client tests that
promise: a made-up client whose update is the clipping norm ``C`` along a random unit direction of the weights
(the worst case a real client could send after clipping). ``privacy.audit.canaries: m`` in a federated run with
``client_dp.mode: server`` makes ``m`` of them; each takes part with probability 1/2, drawn from OS randomness and
sealed like any canary draw (:mod:`trustfm.train.canaries`). An included canary client is sampled each round with
the real clients' rate ``q`` (Poisson), and when sampled its update joins the real ones in the server's private
mean: clipped to ``C``, divided by the expected number of clients, noised once with the rest. Adding or removing
one canary client is exactly what the accountant's guarantee covers, so the audit's bound is a bound on the same
client-level epsilon. The audit scores each canary by how far the global weights moved along its direction.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

from trustfm.runs import RunPaths
from trustfm.train.canaries import (CanarySet, canary_direction, direction_canaries, flat_weights, new_canary_set,
                                    projections, seal_draws)


class CanaryClients:
    """The included canary clients of a run: ``updates()`` gives this round's sampled ones, as weight updates."""

    def __init__(self, canaries: CanarySet, included: np.ndarray, *, sample_rate: float):
        self.canaries = canaries
        self.included = [c for c, keep in zip(canaries.gradient, included) if keep]
        self.sample_rate = sample_rate
        self._rng = np.random.default_rng(secrets.randbits(128))  # not the seed: who is sampled stays secret

    def updates(self, template: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """This round's sampled canary clients' updates: ``C`` along each one's direction over the canaries'
        weights (shaped like ``template``, zero on the weights the directions leave out)."""
        sampled = [c for c, u in zip(self.included, self._rng.random(len(self.included))) if u < self.sample_rate]
        names = self.canaries.gradient_parameters
        size = sum(template[name].numel() for name in names)
        untouched = {k: torch.zeros_like(t) for k, t in template.items() if k not in names}
        out = []
        for canary in sampled:
            direction = canary_direction(canary.seed, size) * self.canaries.gradient_norm
            parts = direction.split([template[name].numel() for name in names])
            out.append({**untouched, **{name: part.view_as(template[name]).to(template[name].dtype)
                                        for name, part in zip(names, parts)}})
        return out


def start_canary_clients(paths: RunPaths, config, model: torch.nn.Module) -> CanaryClients | None:
    """Make the run's canary clients (``privacy.audit`` of a federated run, else None): their directions over the
    model's floating-point weights, the starting weights' projections on them, and the sealed draws."""
    audit = config.privacy.audit
    if audit is None:
        return None
    fed = config.federated
    canaries = new_canary_set(audit)
    canaries.gradient_parameters = [name for name, p in model.named_parameters() if p.is_floating_point()]
    canaries.gradient = direction_canaries(audit.canaries)
    canaries.gradient_norm = fed.client_dp.clipping_norm
    start = flat_weights(model, canaries.gradient_parameters)
    for canary, value in zip(canaries.gradient, projections(start, canaries.gradient)):
        canary.initial = float(value)
    drawn = seal_draws(paths, canaries)
    return CanaryClients(canaries, drawn["client"], sample_rate=fed.fraction)
