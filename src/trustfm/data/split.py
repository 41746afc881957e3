"""Deterministic stratified train/validation/test split of one file."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def stratified_split(
    labels: Sequence[str],
    *,
    validation: float,
    test: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row positions into (train, validation, test) index arrays.

    Each class is shuffled with ``seed`` and cut in the given fractions (rounded,
    at least one row per non-zero part when the class has three or more rows), so
    every split keeps the label proportions. The same labels and seed always give
    the same split; indices in each part are sorted.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in sorted(Counter(labels.tolist())):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_val = int(round(n * validation))
        n_test = int(round(n * test))
        if n >= 3:
            n_val = max(n_val, 1 if validation > 0 else 0)
            n_test = max(n_test, 1 if test > 0 else 0)
        n_val = min(n_val, max(n - 1, 0))
        n_test = min(n_test, max(n - 1 - n_val, 0))
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)) if p else np.array([], dtype=np.int64) for p in parts)  # type: ignore[return-value]
