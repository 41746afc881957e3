"""Drift statistics between a reference sample and a window of production outputs: plain functions over arrays.

Definitions follow the reference implementations so that the numbers can be checked against them:

- :func:`psi` is Evidently's population stability index (``psi_stat_test``, Evidently 0.7): for a numeric column
  with more than 20 distinct reference values, equal-width bins over the range of reference and window together,
  as many as Sturges' rule gives for their pooled size; else one bin per value. An empty bin counts as 0.0001 (or
  a millionth of the side's smallest share, when that is smaller still). PSI = Σ (ref − cur) · ln(ref / cur).
- :func:`ks` is scipy's two-sample Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``, two-sided, ``auto`` method).
- :func:`class_chi_square` is Pearson's goodness-of-fit test of the window's class counts against the reference
  proportions (``scipy.stats.chisquare``).
- :func:`mmd_permutation_test` is the unbiased squared maximum mean discrepancy with a Gaussian kernel (bandwidth:
  median pairwise distance of the pooled sample) and its permutation p-value.

A reference is kept sorted (:class:`SortedSample`) so a histogram over any edges costs two binary searches per
edge, not a pass over the reference: the reference is summarised once, at training time, not per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PSI_FLOOR = 0.0001  # Evidently's value for an empty bin, on either side (unless a filled bin is even smaller)


@dataclass(frozen=True)
class SortedSample:
    """A reference sample of one numeric column, sorted once (``values``: (n,) float64, ascending)."""

    values: np.ndarray

    @classmethod
    def of(cls, values) -> "SortedSample":
        return cls(np.sort(np.asarray(values, dtype=np.float64)))

    def __len__(self) -> int:
        return len(self.values)

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """Counts per bin, with numpy's convention (bins half-open, the last one closed)."""
        left = np.searchsorted(self.values, edges[:-1], side="left")
        right = np.searchsorted(self.values, edges[1:], side="left")
        right[-1] = np.searchsorted(self.values, edges[-1], side="right")
        return right - left

    def distinct_at_most(self, k: int) -> bool:
        """True when the sample holds at most ``k`` distinct values."""
        return len(self.values) == 0 or int(np.count_nonzero(np.diff(self.values))) + 1 <= k


def _fill_empty(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares != 0].min()
    return np.where(shares == 0, smallest / 10 ** 6 if smallest <= PSI_FLOOR else PSI_FLOOR, shares)


def _psi_from_fractions(reference: np.ndarray, current: np.ndarray) -> float:
    reference, current = _fill_empty(reference), _fill_empty(current)
    return float(np.sum((reference - current) * np.log(reference / current)))


def _sturges_edges(low: float, high: float, pooled_size: int) -> np.ndarray:
    """numpy's ``histogram_bin_edges(pooled, bins="sturges")`` from the pooled sample's range and size alone."""
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / (np.log2(pooled_size) + 1.0)
    return np.linspace(low, high, int(np.ceil((high - low) / width)) + 1, endpoint=True)


def psi(reference: SortedSample, current) -> float:
    """Population stability index of ``current`` (n,) against ``reference``; 0 = same distribution, > 0.2 is
    commonly read as a large shift. Raises ValueError on an empty side."""
    current = np.asarray(current, dtype=np.float64)
    if len(reference) == 0 or len(current) == 0:
        raise ValueError("PSI needs a non-empty reference and window")
    if not reference.distinct_at_most(20):
        low = min(reference.values[0], float(current.min()))
        high = max(reference.values[-1], float(current.max()))
        edges = _sturges_edges(low, high, len(reference) + len(current))
        ref_counts = reference.histogram(edges)
        cur_counts = np.histogram(current, edges)[0]
    else:
        keys = np.union1d(np.unique(reference.values), np.unique(current))
        ref_counts = np.searchsorted(reference.values, keys, side="right") - np.searchsorted(reference.values, keys)
        cur_sorted = np.sort(current)
        cur_counts = np.searchsorted(cur_sorted, keys, side="right") - np.searchsorted(cur_sorted, keys)
    return _psi_from_fractions(ref_counts / len(reference), cur_counts / len(current))


def class_psi(reference_proportions, current_counts) -> float:
    """PSI between reference class proportions (k,) and a window's class counts (k,)."""
    counts = np.asarray(current_counts, dtype=np.float64)
    return _psi_from_fractions(np.asarray(reference_proportions, dtype=np.float64), counts / counts.sum())


def class_chi_square(reference_proportions, current_counts) -> tuple[float, float]:
    """(statistic, p-value) of the window's class counts (k,) against the reference proportions (k,).

    Classes the reference never predicted get a tiny expected share (1e-6), so a class that appears in production
    only shows as a large statistic rather than an infinite one.
    """
    from scipy.stats import chisquare

    counts = np.asarray(current_counts, dtype=np.float64)
    expected = np.maximum(np.asarray(reference_proportions, dtype=np.float64), 1e-6)
    expected = expected / expected.sum() * counts.sum()
    statistic, p_value = chisquare(counts, expected)
    return float(statistic), float(p_value)


def ks(reference: SortedSample, current) -> tuple[float, float]:
    """(statistic, p-value) of scipy's two-sample Kolmogorov–Smirnov test."""
    from scipy.stats import ks_2samp

    result = ks_2samp(reference.values, np.asarray(current, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


def mmd_permutation_test(reference: np.ndarray, current: np.ndarray, *, permutations: int = 200,
                         seed: int = 0) -> tuple[float, float]:
    """(unbiased MMD², permutation p-value) between embedding samples ``reference`` (m, d) and ``current`` (n, d).

    The Gaussian kernel's bandwidth is the median pairwise distance of the pooled sample. The p-value is
    (1 + #{permuted MMD² ≥ observed}) / (1 + permutations). Cost: one (m+n)² kernel matrix; keep m, n ≤ ~1000.
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("MMD needs at least two embeddings on each side")
    pooled = np.concatenate([x, y])
    squared = np.sum(pooled ** 2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T, 0.0)
    off_diagonal = distances[np.triu_indices(m + n, k=1)]
    bandwidth = float(np.median(off_diagonal)) or 1.0
    kernel = np.exp(-distances / bandwidth)
    np.fill_diagonal(kernel, 0.0)
    total = kernel.sum()

    def mmd2(is_x: np.ndarray) -> float:
        # one matrix-vector product per split: the three block sums follow from K·1_x and the total
        row_sums = kernel @ is_x
        sum_xx = float(is_x @ row_sums)
        sum_xy = float(row_sums.sum() - sum_xx)
        sum_yy = float(total - sum_xx - 2 * sum_xy)
        return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * sum_xy / (m * n)

    labels = np.zeros(m + n, dtype=np.float64)
    labels[:m] = 1.0
    observed = mmd2(labels)
    rng = np.random.default_rng(seed)
    exceed = sum(mmd2(rng.permutation(labels)) >= observed for _ in range(permutations))
    return observed, (1 + exceed) / (1 + permutations)
