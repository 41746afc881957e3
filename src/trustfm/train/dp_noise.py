"""The secret randomness of DP-SGD: which rows each step samples, and the Gaussian noise.

DP-SGD's guarantee holds only if the adversary knows neither the noise nor
which rows each batch held. Randomness drawn from the run's ``seed`` (which
the run folder records in ``config.yaml``) would let anyone holding the
config regenerate both, and subtract the noise from the released model. So
:class:`SecretRandomness` draws each epoch's randomness from 128 fresh bits
of the operating system's entropy (``secrets``), never from ``seed``.

Resuming stays exact: the entropy of the *next* epoch is drawn when an epoch
ends and travels in the checkpoint, so a resumed run draws what the
uninterrupted run would have; the entropy of finished epochs is forgotten,
so a checkpoint does not reveal the noise already added.

Speed: the noise of a step (one number per trainable parameter, 10.6M for
MiniLM's encoder layers) is a visible part of a CPU step. It is drawn in
``STREAMS`` fixed chunks, each from its own generator, on a pool of threads
(torch releases the GIL while it fills a tensor), so two cores draw it in
about half the time and the numbers do not depend on how many threads ran.

``seed=`` (tests only) makes the randomness a function of ``(seed, epoch)``;
it then offers no protection.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

STREAMS = 8  # fixed number of noise generators: the noise does not depend on the thread count


class SecretRandomness:
    """Per-epoch secret generators for Poisson sampling and Gaussian noise; see the module doc."""

    def __init__(self, *, seed: int | None = None, threads: int | None = None):
        self.seed = seed
        self.threads = threads
        self._entropy: int | None = None  # the current epoch's; drawn on first use
        self._epoch: int | None = None
        self._generators: list[torch.Generator] = []
        self._pool = None

    def _draw(self, epoch: int) -> int:
        if self.seed is not None:
            return int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0])
        return secrets.randbits(128)

    def start_epoch(self, epoch: int) -> None:
        """Seed this epoch's noise generators (from entropy restored from a checkpoint, else fresh)."""
        if self._entropy is None or self._epoch != epoch:
            self._entropy = self._draw(epoch)
        self._epoch = epoch
        seeds = np.random.SeedSequence([self._entropy, 1]).generate_state(STREAMS, np.uint64)
        self._generators = [torch.Generator().manual_seed(int(s) >> 1) for s in seeds]

    def end_epoch(self, epoch: int) -> None:
        """Forget this epoch's entropy and draw the next epoch's (which a checkpoint then carries)."""
        self._entropy, self._epoch = self._draw(epoch + 1), epoch + 1
        self._generators = []

    def poisson_batches(self, n_rows: int, sample_rate: float, steps: int) -> list[np.ndarray]:
        """``steps`` arrays of row positions; each row joins each one independently with ``sample_rate``.

        The same within an epoch (a function of the epoch's entropy only)."""
        if self._entropy is None:
            raise RuntimeError("start_epoch() first")
        rng = np.random.default_rng(np.random.SeedSequence([self._entropy, 0]))
        return [np.flatnonzero(rng.random(n_rows) < sample_rate) for _ in range(steps)]

    def generator(self) -> torch.Generator:
        """One generator for code that draws its own noise (Opacus's ``DPOptimizer``)."""
        if not self._generators:
            raise RuntimeError("start_epoch() first")
        return self._generators[0]

    def gaussian_(self, out: torch.Tensor, std: float) -> torch.Tensor:
        """Fill the 1-D float tensor ``out`` with N(0, std^2) noise in place; returns ``out``."""
        if not self._generators:
            raise RuntimeError("start_epoch() first")
        chunks = out.tensor_split(STREAMS)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            workers = max(1, min(STREAMS, self.threads or torch.get_num_threads()))
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dp-noise")
        list(self._pool.map(lambda k: chunks[k].normal_(0.0, std, generator=self._generators[k]), range(STREAMS)))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def state_dict(self) -> dict:
        # only the entropy of the epoch to come (see the module doc); as a string: JSON and torch.save keep it whole
        return {"entropy": None if self._entropy is None else str(self._entropy), "epoch": self._epoch}

    def load_state_dict(self, state: dict) -> None:
        entropy = state.get("entropy")
        self._entropy = None if entropy is None else int(entropy)
        self._epoch = state.get("epoch")
