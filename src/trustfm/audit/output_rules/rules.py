"""Output rules: a small declarative YAML file checked against every prediction at serving time.

Example::

    rules:
      - name: unsure
        when: {confidence_below: 0.7}
        then: abstain
      - name: out-of-distribution
        when: {ood: true}
        then: abstain
      - name: refund-requests-are-complaints
        when: {text_matches: "(?i)\\\\brefund\\\\b"}
        then: {label: neg}

Conditions inside one ``when`` must all hold; rules are tried in file order and
the first that matches decides (a later rule never undoes an earlier one). A
prediction no rule matches keeps the model's label. ``ood: true`` needs the
Mahalanobis detector saved with the model by ``trustfm audit ood``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Condition(_Strict):
    confidence_below: float | None = Field(None, gt=0, le=1, description="top-class probability below this")
    ood: bool | None = Field(None, description="Mahalanobis distance beyond the detector's 95%-TPR threshold")
    ood_score_above: float | None = Field(None, description="Mahalanobis distance above this (instead of the saved threshold)")
    text_matches: str | None = Field(None, description="Python regular expression searched in the text")
    predicted_label: str | None = Field(None, description="the model's label is this one")

    @field_validator("text_matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "Condition":
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("a rule's 'when' needs at least one condition")
        return self

    @property
    def needs_ood(self) -> bool:
        return self.ood is not None or self.ood_score_above is not None


class SetLabel(_Strict):
    label: str


class Rule(_Strict):
    name: str
    when: Condition
    then: Literal["abstain"] | SetLabel


class RuleSet(_Strict):
    rules: list[Rule] = Field(min_length=1)

    def check_labels(self, label_names: Sequence[str], source: str) -> None:
        from trustfm.errors import ConfigError

        for rule in self.rules:
            for label in (rule.when.predicted_label, rule.then.label if isinstance(rule.then, SetLabel) else None):
                if label is not None and label not in label_names:
                    raise ConfigError(f"{source}: rule '{rule.name}' names label '{label}'; the model's labels are "
                                      f"{list(label_names)}")

    @property
    def needs_ood(self) -> bool:
        return any(r.when.needs_ood for r in self.rules)


def load_rules(path: str | Path) -> tuple[RuleSet, str]:
    """Read and validate a rules file; returns (rules, sha256 of the file). Errors name the file and the rule."""
    from trustfm.config.load import read_yaml_mapping
    from trustfm.errors import ConfigError

    path = Path(path)
    tree = read_yaml_mapping(path, what="rules file")
    try:
        return RuleSet.model_validate(tree), hashlib.sha256(path.read_bytes()).hexdigest()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


class RuledPredictions(BaseModel):
    """Per text (n): final label or None when abstaining, and which rule decided (None: the model)."""

    labels: list[str | None]
    model_labels: list[str]
    rules: list[str | None]

    @property
    def answered(self) -> np.ndarray:
        return np.array([x is not None for x in self.labels])


def apply_rules(
    rules: RuleSet, texts: Sequence[str], proba: np.ndarray, label_names: Sequence[str], *,
    ood_scores: np.ndarray | None = None, ood_threshold: float | None = None,
) -> RuledPredictions:
    """Apply ``rules`` to predictions ``proba`` (n, num_labels) for ``texts``.

    ``ood_scores`` (n,) and ``ood_threshold`` are needed when a rule uses ``ood``.
    """
    from trustfm.errors import ConfigError

    if rules.needs_ood and ood_scores is None:
        raise ConfigError("a rule uses 'ood' but no OOD detector is saved with this model: run `trustfm audit ood` first")
    if any(r.when.ood is not None for r in rules.rules) and ood_threshold is None:
        raise ConfigError("a rule uses 'ood: true|false' but the saved OOD detector has no threshold; use ood_score_above")
    pred = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    model_labels = [label_names[i] for i in pred]
    n = len(texts)
    decided = np.zeros(n, dtype=bool)
    labels: list[str | None] = list(model_labels)
    fired: list[str | None] = [None] * n
    for rule in rules.rules:
        c = rule.when
        hit = ~decided
        if c.confidence_below is not None:
            hit &= confidence < c.confidence_below
        if c.predicted_label is not None:
            hit &= np.array([m == c.predicted_label for m in model_labels], dtype=bool)
        if c.ood is not None:
            hit &= (ood_scores > ood_threshold) == c.ood
        if c.ood_score_above is not None:
            hit &= ood_scores > c.ood_score_above
        if c.text_matches is not None:
            pattern = re.compile(c.text_matches)
            hit &= np.array([bool(pattern.search(t)) for t in texts], dtype=bool)
        for i in np.flatnonzero(hit):
            labels[i] = None if rule.then == "abstain" else rule.then.label
            fired[i] = rule.name
        decided |= hit
    return RuledPredictions(labels=labels, model_labels=model_labels, rules=fired)


def ood_scores(predictor, texts: Sequence[str]) -> tuple[np.ndarray, float | None] | None:
    """Mahalanobis OOD scores (n,) of ``texts`` and the saved 95%-TPR threshold, or None when the predictor's
    model folder has no detector (``trustfm audit ood`` saves one)."""
    from trustfm.audit.ood.detectors import DETECTOR_FILE, MahalanobisDetector

    if not (predictor.model_dir / DETECTOR_FILE).exists():
        return None
    detector, meta = MahalanobisDetector.load(predictor.model_dir)
    return detector.score(predictor.embed(texts)), meta.get("threshold_at_95_tpr")


def apply_rules_with_ood(rules: "RuleSet", predictor, texts: Sequence[str], proba: np.ndarray) -> "RuledPredictions":
    """:func:`apply_rules` over ``texts`` and their ``proba`` (n, k), with OOD scores from the predictor's
    saved detector when a rule needs them."""
    ood = ood_scores(predictor, texts) if rules.needs_ood else None
    return apply_rules(rules, texts, proba, predictor.label_names, ood_scores=None if ood is None else ood[0],
                       ood_threshold=None if ood is None else ood[1])
