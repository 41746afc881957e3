"""Before/after tables for a mitigation: accuracy and every fairness number, with intervals."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, computed_field

from trustfm.audit.fairness.group import DISPARITIES, FairnessResult
from trustfm.results import Interval
from trustfm.results import Result

# the worst gap is chosen among these (smaller is fairer). Equalized odds is left out on purpose:
# its Fairlearn value counts undefined rates as 0; its parts, tpr_gap and fpr_gap, are in.
_GAP_METRICS = ("demographic_parity_difference", "tpr_gap", "fpr_gap", "accuracy_difference",
                "balanced_accuracy_difference")


class ComparisonRow(BaseModel):
    slice: str
    metric: str
    before: Interval
    after: Interval
    change: float  # after - before


class MitigationComparison(Result):
    """One mitigation against its baseline on the same audit set."""

    kind: Literal["comparison"] = "comparison"
    name: str
    audit_set: str
    before: str  # what the baseline is (run folder, or "argmax predictions")
    after: str
    accuracy_before: Interval | None
    accuracy_after: Interval | None
    rows: list[ComparisonRow]
    worst_gap_metric: str
    worst_gap_slice: str
    worst_gap_before: float
    worst_gap_after: float

    @computed_field
    @property
    def accuracy_change(self) -> float | None:
        """Accuracy after minus before (None when either is unknown)."""
        if self.accuracy_before is None or self.accuracy_after is None:
            return None
        return self.accuracy_after.value - self.accuracy_before.value

    def metrics(self) -> dict[str, float]:
        """``worst_gap_before`` and ``worst_gap_after``."""
        return {"worst_gap_before": self.worst_gap_before, "worst_gap_after": self.worst_gap_after}


def compare_fairness(
    before: FairnessResult,
    after: FairnessResult,
    *,
    name: str,
    before_label: str,
    after_label: str,
    accuracy_before: Interval | None = None,
    accuracy_after: Interval | None = None,
) -> MitigationComparison:
    """Row per (slice, disparity) present in both results.

    The worst gap is the largest 'before' gap over protected slices (see
    ``FairnessSlice.protected``), so a probe's descriptive columns cannot hide it.
    """
    rows = []
    protected = {sl.name for sl in after.slices if sl.protected}
    for slice_before in before.slices:
        try:
            slice_after = after.slice(slice_before.name)
        except KeyError:
            continue
        for metric in DISPARITIES:
            if metric not in slice_before.disparities or metric not in slice_after.disparities:
                continue  # a result written by an older trustfm
            b, a = slice_before.disparities[metric], slice_after.disparities[metric]
            rows.append(ComparisonRow(slice=slice_before.name, metric=metric, before=b, after=a,
                                      change=float(a.value - b.value)))
    gaps = [r for r in rows if r.metric in _GAP_METRICS and r.slice in protected and not np.isnan(r.before.value)]
    worst = max(gaps, key=lambda r: r.before.value) if gaps else None
    return MitigationComparison(
        name=name,
        audit_set=after.dataset,
        before=before_label,
        after=after_label,
        accuracy_before=accuracy_before,
        accuracy_after=accuracy_after,
        rows=rows,
        worst_gap_metric=worst.metric if worst else "",
        worst_gap_slice=worst.slice if worst else "",
        worst_gap_before=worst.before.value if worst else float("nan"),
        worst_gap_after=worst.after.value if worst else float("nan"),
    )
