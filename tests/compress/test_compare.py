"""``audit compare``: paired deltas that agree with the reference implementations, exemplars that add up, and a
clear refusal for runs that are not parent and child."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from trustfm.compress.compare import Outputs, PairedBootstrap, PairedSet, _auc, compare_runs
from trustfm.compress.run import CompressionSettings, compress_run
from trustfm.errors import ConfigError


@pytest.fixture(scope="module")
def child_run(parent_run, tmp_path_factory):
    child = tmp_path_factory.mktemp("compare") / "child"
    compress_run(parent_run, settings=CompressionSettings(method="prune", fraction=0.5, epochs=1, min_agreement=0.5),
                 output_dir=child)
    return child


@pytest.fixture(scope="module")
def comparison(parent_run, child_run):
    return compare_runs(parent_run, child_run, robustness_texts=60, attack_texts=10, membership_rows=40)


def _delta(result, name):
    return next(d for d in result.deltas if d.metric == name)


def test_headline_numbers_match_each_runs_own_evaluation(parent_run, child_run, comparison):
    for name, key in (("accuracy", "accuracy"), ("macro_f1", "macro_f1"),
                      ("expected_calibration_error", "expected_calibration_error")):
        delta = _delta(comparison, name)
        for side, run in (("parent", parent_run), ("child", child_run)):
            value = json.loads((run / "results" / "performance.json").read_text())[key]
            value = value["value"] if isinstance(value, dict) else value
            assert getattr(delta, side) == pytest.approx(value, abs=1e-9), (name, side)
        assert delta.delta.value == pytest.approx(delta.child - delta.parent)
        assert delta.delta.low <= delta.delta.value <= delta.delta.high


def test_group_accuracy_matches_fairlearn(parent_run, comparison):
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    from trustfm.audit.context import AuditContext
    from trustfm.models.predictor import Predictor

    ctx = AuditContext(parent_run)
    part = ctx.eval_part
    y_pred = Predictor.from_run(parent_run).predict_proba(part.texts).argmax(1)
    frame = MetricFrame(metrics=accuracy_score, y_true=ctx.data.label_ids(part), y_pred=y_pred,
                        sensitive_features=np.asarray(part.groups["group"]))
    for group, value in frame.by_group.items():
        assert _delta(comparison, f"group.group.{group}.accuracy").parent == pytest.approx(value)
    gap = _delta(comparison, "group.group.accuracy_gap")
    assert gap.parent == pytest.approx(frame.difference(method="between_groups"))
    worst = _delta(comparison, "group.group.worst_group_accuracy")
    assert worst.parent == pytest.approx(frame.group_min())
    assert comparison.worst_group_accuracy_drop.value == pytest.approx(worst.parent - worst.child)


def test_every_kind_of_delta_is_there_with_an_interval(comparison):
    names = {d.metric for d in comparison.deltas}
    assert {"attack.deepwordbug.success_rate", "attack.deepwordbug.robust_accuracy",
            "membership.loss_attack.auc"} <= names
    assert any(n.startswith("robustness.") and n.endswith(".flip_rate") for n in names)
    assert comparison.not_compared == {"ood": "no --ood-data given"}
    metrics = comparison.metrics()
    assert metrics["accuracy_drop"] == pytest.approx(-metrics["accuracy.delta"])
    assert "worst_group_accuracy_drop.high" in metrics


def test_disagreements_add_up(comparison):
    dis = comparison.disagreements
    assert dis.changed == sum(dis.by_class.values()) == sum(dis.by_group["group"].values())
    assert dis.rate == pytest.approx(1 - comparison.agreement)
    assert dis.child_right + dis.parent_right <= dis.changed
    assert len(dis.examples) == min(dis.changed, 10)
    assert all(ex.parent_label != ex.child_label for ex in dis.examples)


def test_paired_bootstrap_of_identical_models_is_exactly_zero_and_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores, y = rng.normal(size=200), (rng.random(200) < 0.4).astype(np.int64)
    scores += y  # an informative score
    same = Outputs(np.zeros((200, 1)), {"score": scores})
    pair = PairedSet("x", same, same, y, {}, [np.flatnonzero(y == 1), np.flatnonzero(y == 0)])
    delta = PairedBootstrap(pair.strata, samples=300, seed=1).delta("auc", _auc("score", y), pair, confidence=0.95,
                                                                   higher_is_better=True)
    assert delta.parent == pytest.approx(roc_auc_score(y, scores))
    assert delta.delta.value == 0 and delta.delta.low == 0 and delta.delta.high == 0


def test_runs_that_are_not_parent_and_child_are_refused(parent_run, child_run, tmp_path):
    with pytest.raises(ConfigError, match="is not a compressed run"):
        compare_runs(child_run, parent_run)
    other = tmp_path / "other-parent"
    shutil.copytree(parent_run, other)
    with pytest.raises(ConfigError, match="is not a compression of"):
        compare_runs(other, child_run)
    # the parent's weights changed after the child was made from it
    moved = tmp_path / "moved"
    shutil.copytree(child_run, moved)
    info = json.loads((moved / "run.json").read_text())
    info["compression"]["parent"] = str(other.resolve())
    (moved / "run.json").write_text(json.dumps(info))
    (other / "model" / "head.safetensors").write_bytes((other / "model" / "head.safetensors").read_bytes() + b" ")
    with pytest.raises(ConfigError, match="changed after"):
        compare_runs(other, moved)
