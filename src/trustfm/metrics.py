"""Classification metrics over model outputs, vectorised so bootstraps are cheap.

All functions take integer labels ``y_true`` of shape (n,) in ``[0, k)`` and
either predicted labels ``y_pred`` (n,) or class probabilities ``proba`` (n, k).
Definitions follow scikit-learn (zero division counts as 0), and the test-suite
checks every number against it.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrix (k, k): rows are true classes, columns predicted classes."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_prf(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class from confusion matrices (..., k, k)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    predicted = confusion.sum(axis=-2)
    support = confusion.sum(axis=-1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, predicted + support)
    return precision, recall, f1, support


def macro_f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 over the classes present in truth or prediction (sklearn's label set)."""
    _, _, f1, support = per_class_prf(confusion)
    present = (support + confusion.sum(axis=-2)) > 0
    return (f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def binary_roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve for binary ``y_true`` in {0, 1} (Mann–Whitney, ties count 1/2).

    Returns NaN when only one class is present.
    """
    y_true = np.asarray(y_true).astype(bool)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = np.asarray(score)[order]
    ranks = np.empty(len(score), dtype=np.float64)
    # average ranks over tied scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(score)]))
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC on ``proba[:, 1]``, or one-vs-rest macro AUC for more classes.

    Like scikit-learn's ``roc_auc_score(multi_class='ovr', average='macro')``; NaN
    when a class is missing from ``y_true``.
    """
    k = proba.shape[1]
    if k == 2:
        return binary_roc_auc(y_true == 1, proba[:, 1])
    scores = [binary_roc_auc(y_true == c, proba[:, c]) for c in range(k)]
    return float(np.mean(scores))


def calibration_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int
) -> tuple[float, list[dict]]:
    """Expected calibration error of the top-label confidence, and the reliability bins.

    Bins split [0, 1] into ``n_bins`` equal widths (right-closed, the first also
    holds 0). ECE = sum over bins of (bin count / n) * |accuracy - mean confidence|.
    Each bin dict has ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``
    (the last two None for empty bins).
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins)
    ece = float(np.abs(acc_sum - conf_sum).sum() / max(len(y_true), 1))
    bins = []
    for b in range(n_bins):
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": int(count[b]),
                "confidence": float(conf_sum[b] / count[b]) if count[b] else None,
                "accuracy": float(acc_sum[b] / count[b]) if count[b] else None,
            }
        )
    return ece, bins


def bootstrap_accuracy_macro_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    k: int,
    *,
    samples: int,
    seed: int,
    chunk: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap distributions (shape (samples,)) of accuracy and macro-F1.

    Resamples rows with replacement; confusion matrices for a whole chunk of
    resamples come from one ``bincount``, so 1,000 resamples of 10,000 rows take
    well under a second.
    """
    n = len(y_true)
    rng = np.random.default_rng(seed)
    cell = (y_true * k + y_pred).astype(np.int64)
    accuracy = np.empty(samples)
    macro_f1 = np.empty(samples)
    for start in range(0, samples, chunk):
        b = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * (k * k) + cell[idx]).ravel()
        confusion = np.bincount(flat, minlength=b * k * k).reshape(b, k, k)
        accuracy[start : start + b] = np.trace(confusion, axis1=1, axis2=2) / n
        macro_f1[start : start + b] = macro_f1_from_confusion(confusion)
    return accuracy, macro_f1


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval of a bootstrap distribution."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def quick_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy (nats) — the per-epoch validation numbers."""
    k = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    confusion = confusion_counts(y_true, y_pred, k)
    eps = 1e-12
    return {
        "accuracy": float(np.trace(confusion) / max(len(y_true), 1)),
        "macro_f1": float(macro_f1_from_confusion(confusion)),
        "loss": float(-np.mean(np.log(np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0)))),
    }
