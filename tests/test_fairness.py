"""Group fairness numbers must equal Fairlearn's; intervals must agree with its bootstrap."""

import numpy as np
import pytest

from trustfm.audit.fairness import group_fairness


def _case(n=1200, k=2, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.35, 0.15])
    race = rng.choice(["x", "y"], size=n)
    y = rng.integers(0, k, size=n)
    # group c is predicted worse and selected more often
    noise = np.where(groups == "c", 0.4, 0.15)
    flip = rng.random(n) < noise
    pred = np.where(flip, rng.integers(0, k, size=n), y)
    pred = np.where((groups == "c") & (rng.random(n) < 0.2), k - 1, pred)
    return y, pred, groups, race


@pytest.mark.parametrize("k", [2, 3])
def test_group_metrics_and_disparities_equal_fairlearn(k):
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                                   equalized_odds_difference, false_positive_rate, selection_rate,
                                   true_positive_rate)
    from sklearn.metrics import balanced_accuracy_score

    y, pred, groups, _ = _case(k=k)
    names = [str(i) for i in range(k)]
    result = group_fairness(y, pred, {"g": groups}, names, bootstrap_samples=0)
    pos = k - 1
    yb, pb = (y == pos).astype(int), (pred == pos).astype(int)
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                 "fpr": false_positive_rate}, y_true=yb, y_pred=pb, sensitive_features=groups)
    ba = MetricFrame(metrics=balanced_accuracy_score, y_true=y, y_pred=pred, sensitive_features=groups)
    sl = result.slice("g")
    for gm in sl.groups:
        assert gm.metrics["selection_rate"].value == pytest.approx(frame.by_group.loc[gm.group, "selection_rate"])
        assert gm.metrics["tpr"].value == pytest.approx(frame.by_group.loc[gm.group, "tpr"])
        assert gm.metrics["fpr"].value == pytest.approx(frame.by_group.loc[gm.group, "fpr"])
        assert gm.metrics["balanced_accuracy"].value == pytest.approx(ba.by_group.loc[gm.group])
    d = sl.disparities
    assert d["demographic_parity_difference"].value == pytest.approx(demographic_parity_difference(yb, pb, sensitive_features=groups))
    assert d["demographic_parity_ratio"].value == pytest.approx(demographic_parity_ratio(yb, pb, sensitive_features=groups))
    assert d["equalized_odds_difference"].value == pytest.approx(equalized_odds_difference(yb, pb, sensitive_features=groups))
    assert sl.worst_group["accuracy"] == "c"


def test_our_vectorised_statistics_equal_fairlearn_point_values():
    # the bootstrap uses _group_stats; on the identity resample it must give Fairlearn's numbers
    from trustfm.audit.fairness import _disparities, _group_stats

    y, pred, groups, _ = _case(k=3, seed=4)
    result = group_fairness(y, pred, {"g": groups}, ["0", "1", "2"], bootstrap_samples=0)
    names, ids = np.unique(groups, return_inverse=True)
    confusion = np.zeros((len(names), 3, 3), dtype=np.int64)
    np.add.at(confusion, (ids, y, pred), 1)
    stats = _group_stats(confusion, 2)
    for i, gm in enumerate(result.slice("g").groups):
        for metric, interval in gm.metrics.items():
            assert stats[metric][i] == pytest.approx(interval.value)
    for metric, value in _disparities(stats).items():
        assert value == pytest.approx(result.slice("g").disparities[metric].value)


def test_bootstrap_intervals_agree_with_fairlearn_metricframe_bootstrap():
    from fairlearn.metrics import MetricFrame, selection_rate

    y, pred, groups, _ = _case(n=1500, seed=2)
    result = group_fairness(y, pred, {"g": groups}, ["0", "1"], bootstrap_samples=1000, seed=0)
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=pred, sensitive_features=groups,
                        n_boot=300, ci_quantiles=[0.025, 0.975], random_state=0)
    for gm in result.slice("g").groups:
        low_ref = frame.by_group_ci[0].loc[gm.group]
        high_ref = frame.by_group_ci[1].loc[gm.group]
        interval = gm.metrics["selection_rate"]
        width = high_ref - low_ref
        assert abs(interval.low - low_ref) < 0.25 * width and abs(interval.high - high_ref) < 0.25 * width


def test_intersections_and_small_group_warnings():
    y, pred, groups, race = _case(n=300, seed=3)
    result = group_fairness(y, pred, {"g": groups, "race": race}, ["0", "1"], bootstrap_samples=100, min_group_size=30)
    assert [s.name for s in result.slices] == ["g", "race", "g & race"]
    inter = result.slice("g & race")
    assert {gm.group for gm in inter.groups} == {f"{a} & {b}" for a in "abc" for b in "xy"}
    assert any(gm.too_small for gm in inter.groups) and inter.warnings
    assert sum(gm.n for gm in inter.groups) == 300
