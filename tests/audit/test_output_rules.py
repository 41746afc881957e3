"""Output rules: first match decides, errors name file and rule, coverage and accuracy are what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustfm.audit.output_rules.effect import output_rules_effect
from trustfm.errors import ConfigError
from trustfm.audit.output_rules.rules import RuleSet, apply_rules, load_rules

RULES = {"rules": [
    {"name": "refund", "when": {"text_matches": r"(?i)\brefund\b"}, "then": {"label": "neg"}},
    {"name": "unsure", "when": {"confidence_below": 0.7}, "then": "abstain"},
]}


def test_first_matching_rule_decides_and_the_rest_keep_the_model_label():
    rules = RuleSet.model_validate(RULES)
    texts = ["I want a REFUND", "refund please", "fine", "great"]
    proba = np.array([[0.4, 0.6], [0.9, 0.1], [0.35, 0.65], [0.1, 0.9]])
    ruled = apply_rules(rules, texts, proba, ["neg", "pos"])
    assert ruled.labels == ["neg", "neg", None, "pos"]
    assert ruled.rules == ["refund", "refund", "unsure", None]
    assert ruled.model_labels == ["pos", "neg", "pos", "pos"]

    y = np.array([0, 0, 0, 1])
    effect = output_rules_effect(y, proba, ruled, ["neg", "pos"], rules, rules_file="r.yaml", rules_sha256="x",
                                 dataset="d", bootstrap_samples=50)
    assert effect.coverage.value == 0.75
    assert effect.accuracy_answered.value == 1.0  # rows 0, 1, 3
    assert effect.accuracy_model.value == 0.5
    refund = effect.rules[0]
    assert (refund.fired, refund.model_accuracy, refund.rule_accuracy) == (2, 0.5, 1.0)
    curve = {p.threshold: p for p in effect.confidence_curve}
    assert curve[0.9].coverage == 0.5 and curve[0.9].accuracy == 1.0


@pytest.mark.parametrize("content, message", [
    ("rules:\n  - name: a\n    when: {text_matches: '(unclosed'}\n    then: abstain\n", "rules.0.when.text_matches"),
    ("rules:\n  - name: a\n    when: {confidense_below: 0.5}\n    then: abstain\n", "confidense_below"),
    ("rules:\n  - name: a\n    when: {}\n    then: abstain\n", "at least one condition"),
    ("rules: [\n", "not valid YAML"),
])
def test_bad_rules_files_name_the_file_and_the_place(tmp_path, content, message):
    path = tmp_path / "rules.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_unknown_label_and_missing_detector_are_clear_errors(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: odd\n    when: {ood: true}\n    then: {label: neutral}\n")
    rules, digest = load_rules(path)
    assert len(digest) == 64
    with pytest.raises(ConfigError, match="rule 'odd' names label 'neutral'"):
        rules.check_labels(["neg", "pos"], str(path))
    with pytest.raises(ConfigError, match="trustfm audit ood"):
        apply_rules(rules, ["x"], np.array([[0.5, 0.5]]), ["neg", "pos"])
