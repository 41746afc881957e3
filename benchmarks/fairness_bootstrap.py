"""Group-fairness intervals: trustfm's vectorised bootstrap against Fairlearn's MetricFrame bootstrap.

Same rows, same groups, same number of resamples (1,000 by default), same
metrics (selection rate, TPR, FPR, accuracy per group, and the demographic
parity and equalized odds differences). Fairlearn recomputes a MetricFrame per
resample; trustfm counts every resample's per-group confusion cells in one
``bincount``. The data are real: a model's predictions are simulated on the
HateCheck target groups (labels and groups from ../shared/data/hatecheck), so
group sizes and imbalance are the real ones.

Prints one JSON line with both times, the ratio, and the largest difference
between the two tools' interval bounds.
Usage: python benchmarks/fairness_bootstrap.py [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, equalized_odds_difference,
                                   false_positive_rate, selection_rate, true_positive_rate)
    from sklearn.metrics import accuracy_score

    from trustfm.audit.fairness.group import group_fairness
    from trustfm.data.probes import load_hatecheck

    probe = load_hatecheck()
    y = np.array([label == "hateful" for label in probe.labels], dtype=int)
    groups = np.array(probe.groups["target_ident"])
    rng = np.random.default_rng(0)
    # a classifier that is right 85% of the time, and flags texts about two groups more often
    pred = np.where(rng.random(len(y)) < 0.85, y, 1 - y)
    pred = np.where(np.isin(groups, ["Muslims", "gay people"]) & (rng.random(len(y)) < 0.15), 1, pred)

    started = time.perf_counter()
    ours = group_fairness(y, pred, {"target_ident": groups}, ["non-hateful", "hateful"],
                          bootstrap_samples=args.n_boot, seed=0)
    ours_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                     "accuracy": accuracy_score},
            y_true=y, y_pred=pred, sensitive_features=groups, n_boot=args.n_boot,
            ci_quantiles=[0.025, 0.975], random_state=0,
        )
        demographic_parity_difference(y, pred, sensitive_features=groups)
        equalized_odds_difference(y, pred, sensitive_features=groups)
    fairlearn_seconds = time.perf_counter() - started

    gap = 0.0
    for g in ours.slice("target_ident").groups:
        for metric in ("selection_rate", "tpr", "fpr", "accuracy"):
            interval = g.metrics[metric]
            if interval.low is None:  # undefined for this group (no positive rows): no interval
                continue
            gap = max(gap, abs(interval.low - frame.by_group_ci[0].loc[g.group, metric]),
                      abs(interval.high - frame.by_group_ci[1].loc[g.group, metric]))
    print(json.dumps({
        "benchmark": "fairness_bootstrap",
        "rows": len(y),
        "groups": int(len(set(groups))),
        "n_boot": args.n_boot,
        "fairlearn_seconds": round(fairlearn_seconds, 3),
        "trustfm_seconds": round(ours_seconds, 3),
        "ratio": round(fairlearn_seconds / ours_seconds, 1),
        "trustfm_includes": "Fairlearn point values + intervals for 6 metrics and 7 disparities",
        "max_interval_bound_difference": round(gap, 4),
    }))


if __name__ == "__main__":
    main()
