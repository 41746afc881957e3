"""Performance audit: the evaluation numbers of a classifier on labelled data.

:func:`evaluate_predictions` takes model outputs (labels and probabilities), not
a model, so it works for any classifier and is fast to test.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm import metrics as M
from trustfm.results import Interval, Result


class ClassReport(BaseModel):
    label: str
    precision: float
    recall: float
    f1: float
    support: int


class CalibrationBin(BaseModel):
    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


class PerformanceResult(Result):
    """Evaluation of one classifier on one labelled set.

    ``confusion_matrix[i][j]`` counts rows of true class ``i`` predicted as ``j``;
    ``roc_auc`` is binary AUC or one-vs-rest macro AUC (None if a class is absent);
    ``expected_calibration_error`` is in [0, 1].
    """

    kind: Literal["performance"] = "performance"
    split: str
    n: int
    label_names: list[str]
    accuracy: Interval
    macro_f1: Interval
    macro_precision: float
    macro_recall: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    roc_auc: float | None
    log_loss: float
    expected_calibration_error: float
    calibration_bins: list[CalibrationBin]
    confusion_matrix: list[list[int]]
    per_class: list[ClassReport]
    bootstrap_samples: int

    def headline(self) -> dict[str, float]:
        """The few numbers a summary shows (and a policy gate can refer to)."""
        return {
            "accuracy": self.accuracy.value,
            "macro_f1": self.macro_f1.value,
            "roc_auc": float("nan") if self.roc_auc is None else self.roc_auc,
            "expected_calibration_error": self.expected_calibration_error,
        }


def evaluate_predictions(
    y_true: np.ndarray,
    proba: np.ndarray,
    label_names: list[str],
    *,
    split: str = "test",
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    n_bins: int = 15,
    seed: int = 0,
) -> PerformanceResult:
    """All evaluation numbers for ``y_true`` (n,) against ``proba`` (n, k) rows summing to 1."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = len(label_names)
    if proba.ndim != 2 or proba.shape != (len(y_true), k):
        raise ValueError(f"proba must have shape ({len(y_true)}, {k}), got {proba.shape}")
    y_pred = proba.argmax(axis=1)
    confusion = M.confusion_counts(y_true, y_pred, k)
    precision, recall, f1, support = M.per_class_prf(confusion)
    present = (support + confusion.sum(axis=0)) > 0
    n = len(y_true)
    tp_total = float(np.trace(confusion))
    accuracy = tp_total / n
    macro_f1 = float(M.macro_f1_from_confusion(confusion))

    def interval(value: float, draws: np.ndarray | None) -> Interval:
        return Interval.from_draws(value, draws, confidence)

    acc_draws = f1_draws = None
    if bootstrap_samples > 0:
        acc_draws, f1_draws = M.bootstrap_accuracy_macro_f1(
            y_true, y_pred, k, samples=bootstrap_samples, seed=seed
        )
    ece, bins = M.calibration_bins(y_true, proba, n_bins)
    auc = M.roc_auc(y_true, proba)
    eps = 1e-15
    log_loss = float(-np.mean(np.log(np.clip(proba[np.arange(n), y_true], eps, 1.0))))
    return PerformanceResult(
        split=split,
        n=n,
        label_names=list(label_names),
        accuracy=interval(accuracy, acc_draws),
        macro_f1=interval(macro_f1, f1_draws),
        macro_precision=float(precision[present].mean()),
        macro_recall=float(recall[present].mean()),
        # single-label multiclass: micro P = micro R = micro F1 = accuracy
        micro_precision=accuracy,
        micro_recall=accuracy,
        micro_f1=accuracy,
        roc_auc=None if np.isnan(auc) else auc,
        log_loss=log_loss,
        expected_calibration_error=ece,
        calibration_bins=[CalibrationBin(**b) for b in bins],
        confusion_matrix=confusion.tolist(),
        per_class=[
            ClassReport(
                label=name,
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, name in enumerate(label_names)
        ],
        bootstrap_samples=bootstrap_samples,
    )
