"""Group fairness audit over model outputs: per group and per intersection, with intervals.

Point values come from Fairlearn's ``MetricFrame`` and its disparity functions,
so they are Fairlearn's numbers by construction (and the tests check it).
Bootstrap intervals come from our own vectorised resampling: every resample's
per-group confusion counts are one ``bincount``, so 1,000 resamples cost about
as much as a handful of ``MetricFrame`` bootstraps.

Binary framing: ``positive`` is the class whose prediction counts as "selected"
(e.g. ``toxic``, ``hateful`` or ``positive``). ``selection_rate``, ``tpr``,
``fpr`` and ``fnr`` are computed on ``y == positive``; ``accuracy`` and
``balanced_accuracy`` use all classes.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm._deps import optional_import
from trustfm.results import Interval
from trustfm.results import Result, put_metric

GROUP_METRICS = ("accuracy", "balanced_accuracy", "selection_rate", "tpr", "fpr", "fnr")
DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "accuracy_difference",
    "balanced_accuracy_difference",
    "tpr_gap",
    "fpr_gap",
)
# Fairlearn's own functions give the first five. tpr_gap / fpr_gap are ours: the spread of TPR
# (FPR) over the groups where it is defined, i.e. that have positive (negative) rows. Fairlearn
# scores an undefined rate as 0, which is kept in equalized_odds_difference for agreement with
# Fairlearn but can dominate it (a probe group with no hateful cases "has TPR 0").


class GroupMetrics(BaseModel):
    group: str
    n: int
    positives: int  # rows whose true label is the positive class
    too_small: bool
    metrics: dict[str, Interval]


class FairnessSlice(BaseModel):
    """One sensitive column, or the intersection of several (name ``a & b``).

    The gaps (``disparities``) are judged over the groups of at least ``min_group_size`` rows only: a group of
    four rows can show any gap by chance. The groups left out are named in ``excluded_groups``; with fewer than
    two groups left, every gap is NaN (not judged), and the gate reports a rule on it as not applicable.
    """

    name: str
    protected: bool = True  # False for descriptive slices of a probe (e.g. HateCheck functionality)
    groups: list[GroupMetrics]
    disparities: dict[str, Interval]
    worst_group: dict[str, str]  # metric -> group with the worst value (among the judged groups)
    warnings: list[str]
    excluded_groups: dict[str, int] = {}  # groups below the minimum size, left out of the gaps -> their rows


DISPARITY_ALIASES = {
    "demographic_parity_difference": "dp_difference",
    "demographic_parity_ratio": "dp_ratio",
    "equalized_odds_difference": "eo_difference",
}


class FairnessResult(Result):
    """Group fairness of one model on one labelled set."""

    kind: Literal["fairness"] = "fairness"
    dataset: str
    n: int
    label_names: list[str]
    positive_label: str
    min_group_size: int
    bootstrap_samples: int
    overall: dict[str, float]
    slices: list[FairnessSlice]

    def metrics(self) -> dict[str, float]:
        """``<slice>.<disparity>`` (with short aliases ``dp_difference``, ``dp_ratio``, ``eo_difference``) and
        ``<slice>.<group>.<metric>``."""
        out: dict[str, float] = {}
        for sl in self.slices:
            for metric, value in sl.disparities.items():
                put_metric(out, f"{sl.name}.{metric}", value)
                if metric in DISPARITY_ALIASES:
                    put_metric(out, f"{sl.name}.{DISPARITY_ALIASES[metric]}", value)
            for group in sl.groups:
                for metric, value in group.metrics.items():
                    put_metric(out, f"{sl.name}.{group.group}.{metric}", value)
        # the largest gap over every sensitive column: one number for a gate or a tuning constraint (over the
        # slices where it was judged)
        gaps: dict[str, float] = {}
        for sl in self.slices:
            for metric, value in sl.disparities.items():
                if metric.endswith(("_difference", "_gap")) and not math.isnan(value.value):
                    name = f"max_{DISPARITY_ALIASES.get(metric, metric)}"
                    gaps[name] = max(gaps.get(name, float("-inf")), value.value)
        out.update(gaps)
        return out

    def undefined_metrics(self) -> dict[str, str]:
        """The gaps of slices with fewer than two groups of ``min_group_size`` rows, and why they are not judged."""
        out: dict[str, str] = {}
        judged_any: set[str] = set()
        for sl in self.slices:
            for metric, value in sl.disparities.items():
                names = [metric] + ([DISPARITY_ALIASES[metric]] if metric in DISPARITY_ALIASES else [])
                if math.isnan(value.value):
                    why = (f"slice '{sl.name}' has fewer than two groups of at least {self.min_group_size} rows"
                           if len(sl.groups) - len(sl.excluded_groups) < 2 else
                           f"{metric} is undefined on slice '{sl.name}' (no rows of a class in its groups)")
                    out.update({f"{sl.name}.{n}": why for n in names})
                elif metric.endswith(("_difference", "_gap")):
                    judged_any.add(f"max_{DISPARITY_ALIASES.get(metric, metric)}")
        for metric in DISPARITIES:
            name = f"max_{DISPARITY_ALIASES.get(metric, metric)}"
            if metric.endswith(("_difference", "_gap")) and name not in judged_any and self.slices:
                out[name] = f"no slice has two groups of at least {self.min_group_size} rows"
        return out

    def slice(self, name: str) -> FairnessSlice:
        for item in self.slices:
            if item.name == name:
                return item
        raise KeyError(f"no slice '{name}'; have {[s.name for s in self.slices]}")


def _group_stats(confusion: np.ndarray, pos: int) -> dict[str, np.ndarray]:
    """Metrics from per-group confusion counts of shape (..., G, K, K) -> arrays (..., G)."""
    n = confusion.sum(axis=(-2, -1)).astype(np.float64)
    diag = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)  # (..., G, K)
    support = confusion.sum(axis=-1).astype(np.float64)  # (..., G, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = diag / support
        present = support > 0
        balanced = np.where(present, recall, 0).sum(axis=-1) / present.sum(axis=-1)
        selected = confusion[..., :, pos].sum(axis=-1).astype(np.float64)
        tp = confusion[..., pos, pos].astype(np.float64)
        actual_pos = support[..., pos]
        fp = selected - tp
        actual_neg = n - actual_pos
        tpr = tp / actual_pos
        fpr = fp / actual_neg
        return {
            "accuracy": diag.sum(axis=-1) / n,
            "balanced_accuracy": balanced,
            "selection_rate": selected / n,
            "tpr": tpr,
            "fpr": fpr,
            "fnr": 1.0 - tpr,
        }


def _disparities(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Between-group disparities (Fairlearn's 'between_groups', worst case) along the last axis."""

    def spread(values: np.ndarray) -> np.ndarray:
        return np.nanmax(values, axis=-1) - np.nanmin(values, axis=-1)

    with np.errstate(divide="ignore", invalid="ignore"):
        sr = stats["selection_rate"]
        ratio = np.nanmin(sr, axis=-1) / np.nanmax(sr, axis=-1)
        # Fairlearn's convention for equalized odds: an undefined rate counts as 0
        tpr0, fpr0 = np.nan_to_num(stats["tpr"], nan=0.0), np.nan_to_num(stats["fpr"], nan=0.0)
        return {
            "demographic_parity_difference": spread(sr),
            "demographic_parity_ratio": np.where(np.nanmax(sr, axis=-1) > 0, ratio, np.nan),
            "equalized_odds_difference": np.maximum(spread(tpr0), spread(fpr0)),
            "accuracy_difference": spread(stats["accuracy"]),
            "balanced_accuracy_difference": spread(stats["balanced_accuracy"]),
            "tpr_gap": spread(stats["tpr"]),
            "fpr_gap": spread(stats["fpr"]),
        }


def _fairlearn_points(y_true, y_pred, groups, pos: int, k: int) -> tuple[dict, dict]:
    """Per-group metrics and disparities from Fairlearn itself (the reference values)."""
    optional_import("fairlearn", "fairness")
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    yb_true = (y_true == pos).astype(int)
    yb_pred = (y_pred == pos).astype(int)
    binary = {
        "selection_rate": selection_rate,
        "tpr": true_positive_rate,
        "fpr": false_positive_rate,
        "fnr": false_negative_rate,
    }
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame_bin = MetricFrame(metrics=binary, y_true=yb_true, y_pred=yb_pred, sensitive_features=groups)
            frame_all = MetricFrame(
                metrics={"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score},
                y_true=y_true,
                y_pred=y_pred,
                sensitive_features=groups,
            )
            by_group = frame_bin.by_group.join(frame_all.by_group)
            disparities = {
                "demographic_parity_difference": demographic_parity_difference(yb_true, yb_pred, sensitive_features=groups),
                "demographic_parity_ratio": demographic_parity_ratio(yb_true, yb_pred, sensitive_features=groups),
                "equalized_odds_difference": equalized_odds_difference(yb_true, yb_pred, sensitive_features=groups),
                "accuracy_difference": float(frame_all.difference()["accuracy"]),
                "balanced_accuracy_difference": float(frame_all.difference()["balanced_accuracy"]),
            }
    points = {str(g): {m: float(by_group.loc[g, m]) for m in GROUP_METRICS} for g in by_group.index}
    return points, {k2: float(v) for k2, v in disparities.items()}


def group_fairness(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: Mapping[str, Sequence[str]],
    label_names: Sequence[str],
    *,
    positive_label: str | None = None,
    dataset: str = "",
    intersections: bool = True,
    descriptive: Sequence[str] = (),
    min_group_size: int = 30,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FairnessResult:
    """Audit predicted labels ``y_pred`` (n,) against ``y_true`` (n,), both ids into ``label_names``.

    ``sensitive`` maps a column name to its group value per row. Each column is
    audited on its own and, with ``intersections`` and two or more columns, on
    their intersection. Groups with fewer than ``min_group_size`` rows are
    flagged as too small to judge (their intervals say how little they tell).
    Columns in ``descriptive`` are audited but marked not protected (they
    describe the test, like a probe's template), so comparisons skip them.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(label_names)
    positive_label = positive_label if positive_label is not None else label_names[-1]
    if positive_label not in label_names:
        raise ValueError(f"positive label {positive_label!r} is not one of {list(label_names)}")
    pos = list(label_names).index(positive_label)
    columns = {name: np.asarray([str(v) for v in values]) for name, values in sensitive.items()}
    for name, values in columns.items():
        if len(values) != len(y_true):
            raise ValueError(f"sensitive column {name!r} has {len(values)} values for {len(y_true)} rows")
    if intersections and len(columns) > 1:
        joined = np.array([" & ".join(parts) for parts in zip(*columns.values())])
        columns[" & ".join(columns)] = joined

    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws = rng.integers(0, n, size=(bootstrap_samples, n)) if bootstrap_samples else None
    slices = []
    for name, values in columns.items():
        audited = _audit_slice(name, values, y_true, y_pred, pos, k, draws, min_group_size, confidence)
        audited.protected = name not in descriptive
        slices.append(audited)
    overall_stats = _group_stats(
        np.bincount(y_true * k + y_pred, minlength=k * k).reshape(1, k, k), pos
    )
    return FairnessResult(
        dataset=dataset,
        n=n,
        label_names=list(label_names),
        positive_label=positive_label,
        min_group_size=min_group_size,
        bootstrap_samples=bootstrap_samples,
        overall={m: float(v[0]) for m, v in overall_stats.items()},
        slices=slices,
    )


def _audit_slice(name, values, y_true, y_pred, pos, k, draws, min_group_size, confidence) -> FairnessSlice:
    group_names, group_ids = np.unique(values, return_inverse=True)
    g = len(group_names)
    counts = np.bincount(group_ids, minlength=g)
    judged = counts >= min_group_size  # the groups the gaps are judged over
    points, disparity_points = _fairlearn_points(y_true, y_pred, values, pos, k)
    if judged.sum() >= 2 and not judged.all():
        # Fairlearn's disparities over the rows of the judged groups only
        rows = judged[group_ids]
        _, disparity_points = _fairlearn_points(y_true[rows], y_pred[rows], values[rows], pos, k)
    cell = (group_ids * k * k + y_true * k + y_pred).astype(np.int64)

    def gaps(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return _disparities({m: v[..., judged] for m, v in stats.items()})

    enough = judged.sum() >= 2
    if enough:
        full = gaps(_group_stats(np.bincount(cell, minlength=g * k * k).reshape(g, k, k), pos))
        disparity_points["tpr_gap"] = float(full["tpr_gap"])
        disparity_points["fpr_gap"] = float(full["fpr_gap"])
    else:
        disparity_points = dict.fromkeys(DISPARITIES, float("nan"))
    boot_stats = boot_disp = None
    if draws is not None:
        b = len(draws)
        stats_chunks, disp_chunks = [], []
        for start in range(0, b, 200):
            chunk = draws[start : start + 200]
            flat = (np.arange(len(chunk))[:, None] * (g * k * k) + cell[chunk]).ravel()
            confusion = np.bincount(flat, minlength=len(chunk) * g * k * k).reshape(len(chunk), g, k, k)
            stats = _group_stats(confusion, pos)
            if enough:
                disp_chunks.append(gaps(stats))
            stats_chunks.append(stats)
        boot_stats = {m: np.concatenate([c[m] for c in stats_chunks]) for m in GROUP_METRICS}
        if enough:
            boot_disp = {m: np.concatenate([c[m] for c in disp_chunks]) for m in DISPARITIES}

    def interval(value: float, sample: np.ndarray | None) -> Interval:
        if sample is None or np.isnan(value):
            return Interval(value=value)
        sample = sample[~np.isnan(sample)]
        return Interval.from_draws(value, sample if len(sample) >= 2 else None, confidence)

    positives = np.bincount(group_ids, weights=(y_true == pos), minlength=g).astype(int)
    groups = []
    warnings_out = []
    excluded = {str(group): int(counts[i]) for i, group in enumerate(group_names) if not judged[i]}
    if excluded:
        shown = ", ".join(f"'{group}' ({n} rows)" for group, n in excluded.items())
        warnings_out.append(
            f"gaps judged over the {int(judged.sum())} groups of at least {min_group_size} rows; left out as too "
            f"small to judge: {shown}" if enough else
            f"gaps not judged: fewer than two groups have at least {min_group_size} rows (too small: {shown})")
    for i, group in enumerate(group_names):
        if judged[i] and (positives[i] == 0 or positives[i] == counts[i]):
            missing = "positive" if positives[i] == 0 else "negative"
            rates = "TPR/FNR" if missing == "positive" else "FPR"
            warnings_out.append(
                f"group '{group}' has no {missing} rows: its {rates} is undefined (Fairlearn reports 0, "
                "which enters the equalized-odds difference)"
            )
        groups.append(
            GroupMetrics(
                group=str(group),
                n=int(counts[i]),
                positives=int(positives[i]),
                too_small=not bool(judged[i]),
                metrics={
                    m: interval(points[str(group)][m], None if boot_stats is None else boot_stats[m][:, i])
                    for m in GROUP_METRICS
                },
            )
        )
    worst = {}
    for metric, higher_is_better in (("accuracy", True), ("balanced_accuracy", True), ("tpr", True), ("fpr", False), ("fnr", False)):
        values_ = [(gm.metrics[metric].value, gm.group) for gm in groups
                   if not gm.too_small and not np.isnan(gm.metrics[metric].value)]
        if values_:
            worst[metric] = (min(values_) if higher_is_better else max(values_))[1]
    return FairnessSlice(
        name=name,
        groups=groups,
        disparities={m: interval(disparity_points[m], None if boot_disp is None else boot_disp[m]) for m in DISPARITIES},
        worst_group=worst,
        warnings=warnings_out,
        excluded_groups=excluded,
    )
