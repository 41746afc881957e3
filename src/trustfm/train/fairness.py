"""Fairness mitigations that join the training loop as callbacks.

Both take, per training row, a group id (shape (n,), the sensitive attribute)
and a label id (shape (n,)).

- :class:`Reweigh`: Kamiran & Calders (2012) re-weighting. Each example's loss
  is scaled by ``P(group) * P(label) / P(group, label)``, which makes group and
  label statistically independent in the weighted training data.
- :class:`BalancedSampling`: each epoch draws its ``n`` rows with replacement,
  with probability inversely proportional to the size of the row's
  (group, label) cell, so every cell contributes equally in expectation.
"""

from __future__ import annotations

import numpy as np
import torch

from trustfm.train.callbacks import Callback


def _cells(groups: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.asarray(groups, dtype=np.int64) * (int(np.max(labels)) + 1) + np.asarray(labels, dtype=np.int64)
    _, cell, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return cell, counts


def reweighing_weights(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Kamiran–Calders weights, shape (n,): ``P(g) P(y) / P(g, y)`` per row (mean 1)."""
    groups = np.asarray(groups, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(groups)
    p_group = np.bincount(groups) / n
    p_label = np.bincount(labels) / n
    cell, counts = _cells(groups, labels)
    p_joint = counts[cell] / n
    return p_group[groups] * p_label[labels] / p_joint


class Reweigh(Callback):
    """Adds ``batch["weight"]`` from :func:`reweighing_weights`."""

    def __init__(self, groups: np.ndarray, labels: np.ndarray):
        self.weights = torch.from_numpy(reweighing_weights(groups, labels).astype(np.float32))

    def on_batch(self, trainer, batch: dict) -> dict:
        batch["weight"] = self.weights[batch["index"]]
        return batch


class BalancedSampling(Callback):
    """Resamples each epoch's rows so every (group, label) cell is drawn equally often."""

    def __init__(self, groups: np.ndarray, labels: np.ndarray, *, seed: int):
        cell, counts = _cells(groups, labels)
        probability = 1.0 / counts[cell]
        self.probability = probability / probability.sum()
        self.seed = seed

    def on_epoch_rows(self, trainer, epoch: int, rows: np.ndarray) -> np.ndarray:
        # seeded by (seed, epoch) like the batch order, so a resumed run draws the same rows
        rng = np.random.default_rng([self.seed, epoch, 7])
        return rng.choice(len(self.probability), size=len(rows), replace=True, p=self.probability)


def mitigation_callbacks(config, groups: dict[str, list[str]], labels: np.ndarray, *, seed: int) -> list[Callback]:
    """Callbacks for ``fairness.mitigation`` (reweigh, balanced_sampling); [] for the others.

    With several sensitive columns the cells are their intersections.
    """
    if config.mitigation not in ("reweigh", "balanced_sampling"):
        return []
    keys = [" & ".join(parts) for parts in zip(*(groups[c] for c in config.sensitive))]
    _, group_ids = np.unique(np.asarray(keys), return_inverse=True)
    if config.mitigation == "reweigh":
        return [Reweigh(group_ids, labels)]
    return [BalancedSampling(group_ids, labels, seed=seed)]
