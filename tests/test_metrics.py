"""Every evaluation number must equal scikit-learn's."""

import numpy as np
import pytest
from sklearn import metrics as skm

from trustfm.metrics import binary_roc_auc, bootstrap_accuracy_macro_f1, calibration_bins
from trustfm.audit.performance.evaluation import evaluate_predictions


def _random_case(n, k, seed, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    if ties:
        logits = np.round(logits)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (5, 2)])
def test_metrics_equal_sklearn(k, seed):
    y, proba = _random_case(500, k, seed)
    names = [f"c{i}" for i in range(k)]
    result = evaluate_predictions(y, proba, names, bootstrap_samples=0)
    pred = proba.argmax(axis=1)
    assert result.accuracy.value == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "micro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert getattr(result, f"{avg}_precision") == pytest.approx(p)
        assert getattr(result, f"{avg}_recall") == pytest.approx(r)
    assert result.macro_f1.value == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert result.micro_f1 == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert result.confusion_matrix == skm.confusion_matrix(y, pred, labels=range(k)).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    for i, row in enumerate(result.per_class):
        assert (row.precision, row.recall, row.f1, row.support) == pytest.approx((p[i], r[i], f[i], s[i]))
    expected_auc = skm.roc_auc_score(y, proba[:, 1]) if k == 2 else skm.roc_auc_score(y, proba, multi_class="ovr")
    assert result.roc_auc == pytest.approx(expected_auc)
    assert result.log_loss == pytest.approx(skm.log_loss(y, proba, labels=range(k)))


def test_auc_with_ties_equals_sklearn():
    y, proba = _random_case(400, 2, 9, ties=True)
    assert binary_roc_auc(y == 1, np.round(proba[:, 1], 1)) == pytest.approx(
        skm.roc_auc_score(y, np.round(proba[:, 1], 1))
    )


def test_missing_predicted_class_matches_sklearn_zero_division():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.9, .1, 0], [.8, .2, 0], [.2, .8, 0], [.6, .4, 0], [.1, .9, 0], [.3, .7, 0]])
    result = evaluate_predictions(y, proba, ["a", "b", "c"], bootstrap_samples=0)
    pred = proba.argmax(axis=1)
    assert result.macro_f1.value == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert result.macro_precision == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))


def test_expected_calibration_error_by_hand():
    # two bins used: confidence 0.95 (4 rows, 3 right) and 0.6 (2 rows, 2 right)
    y = np.array([0, 0, 0, 1, 1, 0])
    proba = np.array([[.95, .05]] * 4 + [[.4, .6]] * 1 + [[.6, .4]])
    ece, bins = calibration_bins(y, proba, n_bins=10)
    expected = (4 / 6) * abs(0.75 - 0.95) + (2 / 6) * abs(1.0 - 0.6)
    assert ece == pytest.approx(expected)
    assert sum(b["count"] for b in bins) == 6


def test_reliability_bins_match_sklearn_calibration_curve_for_confidences():
    y, proba = _random_case(2000, 2, 4)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(int)
    _, bins = calibration_bins(y, proba, n_bins=10)
    prob_true, prob_pred = skm_calibration(correct, conf)
    ours = [(b["accuracy"], b["confidence"]) for b in bins if b["count"]]
    assert np.allclose([a for a, _ in ours], prob_true) and np.allclose([c for _, c in ours], prob_pred)


def skm_calibration(correct, conf):
    from sklearn.calibration import calibration_curve

    return calibration_curve(correct, conf, n_bins=10, strategy="uniform")


def test_bootstrap_intervals_are_deterministic_and_cover_the_point():
    y, proba = _random_case(800, 3, 5)
    a = evaluate_predictions(y, proba, ["a", "b", "c"], bootstrap_samples=500, seed=1)
    b = evaluate_predictions(y, proba, ["a", "b", "c"], bootstrap_samples=500, seed=1)
    assert a.accuracy == b.accuracy
    assert a.accuracy.low < a.accuracy.value < a.accuracy.high
    assert a.macro_f1.low < a.macro_f1.value < a.macro_f1.high
    # the interval width is about 2 * 1.96 * sqrt(p(1-p)/n)
    p = a.accuracy.value
    assert a.accuracy.high - a.accuracy.low == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 800), rel=0.2)


def test_bootstrap_resample_matches_a_direct_sklearn_computation():
    y, proba = _random_case(300, 3, 6)
    pred = proba.argmax(axis=1)
    acc, f1 = bootstrap_accuracy_macro_f1(y, pred, 3, samples=5, seed=11)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 300, size=(5, 300))
    for i in range(5):
        assert acc[i] == pytest.approx(skm.accuracy_score(y[idx[i]], pred[idx[i]]))
        assert f1[i] == pytest.approx(skm.f1_score(y[idx[i]], pred[idx[i]], average="macro", zero_division=0))
