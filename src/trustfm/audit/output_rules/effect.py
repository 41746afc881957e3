"""What output rules do to a model's answers: coverage against accuracy.

Plain functions over model outputs: gold ids ``y_true`` (n,), probabilities
``proba`` (n, k) and the rules' decisions
(:class:`~trustfm.audit.rules.RuledPredictions`). Coverage is the share of
texts the rules let through with a label (not abstained); accuracy on answered
texts is scored on those only. The confidence curve shows what abstaining below
each confidence threshold alone would give, for comparison.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, bootstrap_mean
from trustfm.results import Result, put_metric


class RuleEffect(BaseModel):
    name: str
    action: str  # "abstain" or "label:<name>"
    fired: int  # texts this rule decided
    model_accuracy: float | None  # the model's accuracy on those texts (None if it fired on none)
    rule_accuracy: float | None  # accuracy of the rule's label on those texts (label rules only)


class CoveragePoint(BaseModel):
    threshold: float  # abstain when the top-class probability is below this
    coverage: float
    accuracy: float | None  # on answered texts


class OutputRulesResult(Result):
    """``results/output_rules.json``: the rules' effect on one labelled split."""

    kind: Literal["output_rules"] = "output_rules"
    rules_file: str
    rules_sha256: str
    dataset: str
    n: int
    coverage: Interval
    accuracy_answered: Interval  # with rules, on the texts they answer
    accuracy_model: Interval  # the model alone, on all texts
    rules: list[RuleEffect]
    confidence_curve: list[CoveragePoint]

    def metrics(self) -> dict[str, float]:
        """``coverage``, ``accuracy_answered`` and ``accuracy_model``."""
        out: dict[str, float] = {}
        for key in ("coverage", "accuracy_answered", "accuracy_model"):
            put_metric(out, key, getattr(self, key))
        return out


def output_rules_effect(
    y_true: np.ndarray, proba: np.ndarray, ruled, label_names: Sequence[str], rule_set, *, rules_file: str,
    rules_sha256: str, dataset: str, bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> OutputRulesResult:
    rng = np.random.default_rng(seed)
    index = {n: i for i, n in enumerate(label_names)}
    y_true = np.asarray(y_true)
    model_correct = (proba.argmax(axis=1) == y_true).astype(float)
    answered = ruled.answered
    final = np.array([index[x] if x is not None else -1 for x in ruled.labels])
    final_correct = (final == y_true).astype(float)
    effects = []
    fired_by = np.array([r or "" for r in ruled.rules])
    for rule in rule_set.rules:
        rows = np.flatnonzero(fired_by == rule.name)
        is_label = rule.then != "abstain"
        effects.append(RuleEffect(
            name=rule.name, action=f"label:{rule.then.label}" if is_label else "abstain", fired=len(rows),
            model_accuracy=float(model_correct[rows].mean()) if len(rows) else None,
            rule_accuracy=float(final_correct[rows].mean()) if len(rows) and is_label else None,
        ))
    top = proba.max(axis=1)
    curve = []
    for threshold in np.round(np.arange(0.5, 1.0, 0.025), 3):
        keep = top >= threshold
        curve.append(CoveragePoint(threshold=float(threshold), coverage=float(keep.mean()),
                                   accuracy=float(model_correct[keep].mean()) if keep.any() else None))
    kw = dict(samples=bootstrap_samples, confidence=confidence, rng=rng)
    return OutputRulesResult(
        rules_file=rules_file, rules_sha256=rules_sha256, dataset=dataset, n=len(y_true),
        coverage=bootstrap_mean(answered.astype(float), **kw),
        accuracy_answered=bootstrap_mean(final_correct[answered], **kw) if answered.any() else Interval(value=float("nan")),
        accuracy_model=bootstrap_mean(model_correct, **kw),
        rules=effects, confidence_curve=curve,
    )
