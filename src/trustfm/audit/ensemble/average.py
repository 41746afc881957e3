"""Ensembles: average K members' class probabilities; compare with the single model.

Members are runs trained with different seeds (or any runs with the same
labels and test split, e.g. other checkpoints). The comparison scores the
single model (the first member) and the ensemble on the same test texts:
accuracy and macro-F1 with intervals, log loss and expected calibration error,
and robustness — mean accuracy over the typo/Unicode perturbation tests and
robust accuracy under the DeepWordBug attack (run against the ensemble itself).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval
from trustfm.results import Result, put_metric

NOISE_TESTS = ("typo_swap", "typo_insert", "typo_delete", "typo_keyboard", "homoglyph", "zero_width")


class ModelScores(BaseModel):
    accuracy: Interval
    macro_f1: Interval
    log_loss: float  # nats per text
    expected_calibration_error: float  # in [0, 1]
    perturbation_accuracy: float  # mean accuracy over NOISE_TESTS
    attack_robust_accuracy: Interval  # under DeepWordBug
    attack_success_rate: Interval


class EnsembleResult(Result):
    """``results/ensemble.json``: the first member alone against the average of all members."""

    kind: Literal["ensemble"] = "ensemble"
    members: list[str]
    dataset: str
    n: int
    attack_texts: int
    single: ModelScores
    ensemble: ModelScores

    def metrics(self) -> dict[str, float]:
        """``single.<score>`` and ``ensemble.<score>``."""
        out: dict[str, float] = {}
        for side in ("single", "ensemble"):
            for key, value in getattr(self, side).model_dump().items():
                put_metric(out, f"{side}.{key}", value)
        return out


def average_proba(predictors: Sequence[Callable[[list[str]], np.ndarray]]) -> Callable[[list[str]], np.ndarray]:
    """A ``predict_proba`` that averages the members' class probabilities (n, k)."""

    def predict(texts: list[str]) -> np.ndarray:
        return np.mean([p(list(texts)) for p in predictors], axis=0)

    return predict


def compare_ensemble(
    texts: Sequence[str], y_true: np.ndarray, single: Callable, ensemble: Callable, label_names: Sequence[str], *,
    members: Sequence[str], dataset: str, attack_texts: int = 100, bootstrap_samples: int = 1000,
    confidence: float = 0.95, calibration_bins: int = 15, seed: int = 0,
) -> EnsembleResult:
    """Score ``single`` and ``ensemble`` (each ``predict_proba(texts) -> (n, k)``) on ``texts`` with gold ``y_true``."""
    from trustfm.audit.attacks.recipes import deepwordbug_attack
    from trustfm.audit.performance.evaluation import evaluate_predictions
    from trustfm.audit.robustness.perturb import perturbation_suite

    rows = np.random.default_rng(seed).permutation(len(texts))[:attack_texts]
    attack_set = [texts[i] for i in rows]
    scores = {}
    for name, predict in (("single", single), ("ensemble", ensemble)):
        proba = predict(list(texts))
        perf = evaluate_predictions(y_true, proba, list(label_names), bootstrap_samples=bootstrap_samples,
                                    confidence=confidence, n_bins=calibration_bins, seed=seed)
        suite = perturbation_suite(attack_set, y_true[rows], predict, label_names, tests=NOISE_TESTS,
                                   directional=False, bootstrap_samples=0, seed=seed)
        attack = deepwordbug_attack(attack_set, y_true[rows], predict, label_names, bootstrap_samples=bootstrap_samples,
                                    confidence=confidence, seed=seed, examples=0)
        scores[name] = ModelScores(
            accuracy=perf.accuracy, macro_f1=perf.macro_f1, log_loss=perf.log_loss,
            expected_calibration_error=perf.expected_calibration_error,
            perturbation_accuracy=float(np.mean([t.accuracy.value for t in suite.tests])),
            attack_robust_accuracy=attack.robust_accuracy, attack_success_rate=attack.success_rate,
        )
    return EnsembleResult(members=list(members), dataset=dataset, n=len(texts), attack_texts=len(attack_set), **scores)
