"""Group fairness audit over model outputs: per group and per intersection, with intervals.

Point values come from Fairlearn's ``MetricFrame`` and its disparity functions,
so they are Fairlearn's numbers by construction (and the tests check it).
Bootstrap intervals come from our own vectorised resampling: every resample's
per-group confusion counts are one ``bincount``, so 1,000 resamples cost about
as much as a handful of ``MetricFrame`` bootstraps.

Binary framing: ``positive`` is the class whose prediction counts as "selected"
(e.g. ``toxic``, ``hateful`` or ``positive``). ``selection_rate``, ``tpr``,
``fpr`` and ``fnr`` are computed on ``y == positive``; ``accuracy`` and
``balanced_accuracy`` use all classes. A binary task without a named positive
class takes its second class (label 1). A task of more than two classes without
a named positive class is audited one-vs-rest: every class's rates
(``selection_rate.<class>``, ...) and gaps (``demographic_parity_difference.<class>``,
...), and as the headline gap the worst class's (the largest difference, the
smallest ratio), with its bootstrap interval: no class is singled out silently.
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
    positive_label: str | None  # None: one-vs-rest over every class (a task of more than two classes)
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
    """Per-group metrics and disparities from Fairlearn itself (the reference values), ``pos`` against the rest."""
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


CLASS_RATES = ("selection_rate", "tpr", "fpr", "fnr")  # the one-vs-rest rates, per class
CLASS_GAPS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference", "tpr_gap",
              "fpr_gap")  # the gaps of those rates, per class; the headline is the worst class's


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
    flagged as too small to judge (their intervals say how little they tell) and
    left out of the gaps. Columns in ``descriptive`` are audited but marked not
    protected (they describe the test, like a probe's template), so comparisons
    skip them. Without ``positive_label``: a binary task's second class is the
    positive one; more classes are audited one-vs-rest (see the module docstring).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(label_names)
    if positive_label is None and k == 2:
        positive_label = label_names[-1]
    if positive_label is not None and positive_label not in label_names:
        raise ValueError(f"positive label {positive_label!r} is not one of {list(label_names)}")
    targets = ([(None, list(label_names).index(positive_label))] if positive_label is not None
               else [(str(name), c) for c, name in enumerate(label_names)])
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
        audited = _audit_slice(name, values, y_true, y_pred, targets, k, draws, min_group_size, confidence)
        audited.protected = name not in descriptive
        slices.append(audited)
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(1, k, k)
    overall: dict[str, float] = {}
    for suffix, c in targets:
        stats = _group_stats(confusion, c)
        overall.update({_key(m, suffix) if m in CLASS_RATES else m: float(v[0]) for m, v in stats.items()})
    return FairnessResult(
        dataset=dataset,
        n=n,
        label_names=list(label_names),
        positive_label=positive_label,
        min_group_size=min_group_size,
        bootstrap_samples=bootstrap_samples,
        overall=overall,
        slices=slices,
    )


def _key(metric: str, suffix: str | None) -> str:
    """``metric`` for the binary framing, ``metric.<class>`` for one class of a one-vs-rest audit."""
    return metric if suffix is None else f"{metric}.{suffix}"


def _worst_class(per_class: dict[str, np.ndarray], metric: str) -> np.ndarray:
    """The headline of a one-vs-rest gap over the classes (stacked on the last axis): the largest difference, the
    smallest ratio (NaN classes ignored; NaN when every class is)."""
    import warnings

    stacked = np.stack([per_class[c] for c in per_class], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmin(stacked, axis=-1) if metric.endswith("_ratio") else np.nanmax(stacked, axis=-1)


def _collect_gaps(into: dict, per_class: dict, suffix: str | None, gaps: dict) -> None:
    """Add one target's gaps to ``into``: as they are in the binary framing (``suffix`` None); one-vs-rest, as
    ``<gap>.<class>`` (kept in ``per_class`` for the headline), and the class-free ones (accuracy) as they are."""
    if suffix is None:
        into.update(gaps)
        return
    per_class[suffix] = gaps
    into.update({_key(m, suffix): gaps[m] for m in CLASS_GAPS})
    into.update({m: gaps[m] for m in DISPARITIES if m not in CLASS_GAPS})


def _headline_gaps(into: dict, per_class: dict) -> None:
    """One-vs-rest: each gap's headline is the worst class's (see :func:`_worst_class`)."""
    for metric in CLASS_GAPS if per_class else ():
        into[metric] = _worst_class({c: np.asarray(v[metric]) for c, v in per_class.items()}, metric)


def _audit_slice(name, values, y_true, y_pred, targets, k, draws, min_group_size, confidence) -> FairnessSlice:
    """One sensitive column: per-group metrics and the gaps over the judged groups, for each (class suffix, class
    id) of ``targets`` (one target with suffix None in the binary framing)."""
    group_names, group_ids = np.unique(values, return_inverse=True)
    g = len(group_names)
    counts = np.bincount(group_ids, minlength=g)
    judged = counts >= min_group_size  # the groups the gaps are judged over
    enough = judged.sum() >= 2
    rows = judged[group_ids]
    cell = (group_ids * k * k + y_true * k + y_pred).astype(np.int64)
    full_confusion = np.bincount(cell, minlength=g * k * k).reshape(g, k, k)

    def gaps(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return _disparities({m: v[..., judged] for m, v in stats.items()})

    points: dict[str, dict[str, float]] = {str(group): {} for group in group_names}
    disparity_points: dict[str, float] = {}
    per_class_points: dict[str, dict[str, float]] = {}
    for suffix, c in targets:
        group_points, class_disparities = _fairlearn_points(y_true, y_pred, values, c, k)
        if enough and not judged.all():
            # Fairlearn's disparities over the rows of the judged groups only
            _, class_disparities = _fairlearn_points(y_true[rows], y_pred[rows], values[rows], c, k)
        if enough:
            full = gaps(_group_stats(full_confusion, c))
            class_disparities.update(tpr_gap=float(full["tpr_gap"]), fpr_gap=float(full["fpr_gap"]))
        else:
            class_disparities = dict.fromkeys(DISPARITIES, float("nan"))
        for group, metrics in group_points.items():
            points[group].update({_key(m, suffix) if m in CLASS_RATES else m: v for m, v in metrics.items()})
        _collect_gaps(disparity_points, per_class_points, suffix, class_disparities)
    _headline_gaps(disparity_points, per_class_points)
    disparity_points = {m: float(v) for m, v in disparity_points.items()}
    metric_names = list(next(iter(points.values())))
    boot_stats = boot_disp = None
    if draws is not None:
        stats_chunks, disp_chunks = [], []
        for start in range(0, len(draws), 200):
            chunk = draws[start : start + 200]
            flat = (np.arange(len(chunk))[:, None] * (g * k * k) + cell[chunk]).ravel()
            confusion = np.bincount(flat, minlength=len(chunk) * g * k * k).reshape(len(chunk), g, k, k)
            stats, disp, per_class = {}, {}, {}
            for suffix, c in targets:
                class_stats = _group_stats(confusion, c)
                stats.update({_key(m, suffix) if m in CLASS_RATES else m: v for m, v in class_stats.items()})
                if enough:
                    _collect_gaps(disp, per_class, suffix, gaps(class_stats))
            _headline_gaps(disp, per_class)
            stats_chunks.append(stats)
            disp_chunks.append(disp)
        boot_stats = {m: np.concatenate([c[m] for c in stats_chunks]) for m in metric_names}
        if enough:
            boot_disp = {m: np.concatenate([c[m] for c in disp_chunks]) for m in disparity_points}

    def interval(value: float, sample: np.ndarray | None) -> Interval:
        if sample is None or np.isnan(value):
            return Interval(value=value)
        sample = sample[~np.isnan(sample)]
        return Interval.from_draws(value, sample if len(sample) >= 2 else None, confidence)

    groups = []
    warnings_out = []
    excluded = {str(group): int(counts[i]) for i, group in enumerate(group_names) if not judged[i]}
    if excluded:
        shown = ", ".join(f"'{group}' ({n} rows)" for group, n in excluded.items())
        warnings_out.append(
            f"gaps judged over the {int(judged.sum())} groups of at least {min_group_size} rows; left out as too "
            f"small to judge: {shown}" if enough else
            f"gaps not judged: fewer than two groups have at least {min_group_size} rows (too small: {shown})")
    binary_pos = targets[0][1] if targets[0][0] is None else None
    positives = (np.bincount(group_ids, weights=(y_true == binary_pos), minlength=g).astype(int)
                 if binary_pos is not None else np.zeros(g, dtype=int))
    for i, group in enumerate(group_names):
        if binary_pos is not None and judged[i] and (positives[i] == 0 or positives[i] == counts[i]):
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
                    for m in metric_names
                },
            )
        )
    worst = {}
    for metric, higher_is_better in (("accuracy", True), ("balanced_accuracy", True), ("tpr", True), ("fpr", False), ("fnr", False)):
        values_ = [(gm.metrics[metric].value, gm.group) for gm in groups
                   if metric in gm.metrics and not gm.too_small and not np.isnan(gm.metrics[metric].value)]
        if values_:
            worst[metric] = (min(values_) if higher_is_better else max(values_))[1]
    return FairnessSlice(
        name=name,
        groups=groups,
        disparities={m: interval(v, None if boot_disp is None else boot_disp[m]) for m, v in disparity_points.items()},
        worst_group=worst,
        warnings=warnings_out,
        excluded_groups=excluded,
    )
