"""Training-data representation: are all groups there, and in what label balance?"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Mapping, Sequence

from pydantic import BaseModel
from trustfm.results import Result


class GroupRepresentation(BaseModel):
    group: str
    n: int
    share: float  # of all rows, in [0, 1]
    label_share: dict[str, float]  # label -> share of this group's rows
    flags: list[str]  # why the group needs a look; empty when it is fine


class RepresentationResult(Result):
    kind: Literal["representation"] = "representation"
    dataset: str
    n: int
    overall_label_share: dict[str, float]
    columns: dict[str, list[GroupRepresentation]]
    flagged: int


def representation_check(
    labels: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    label_names: Sequence[str],
    *,
    dataset: str = "",
    min_count: int = 30,
    min_share: float = 0.05,
    max_label_gap: float = 0.2,
) -> RepresentationResult:
    """Counts and label balance per group; flag groups that are small, rare or skewed.

    A group is flagged when it has fewer than ``min_count`` rows, less than
    ``min_share`` of all rows, lacks a label entirely, or its share of some label
    differs from the overall share by more than ``max_label_gap`` (absolute).
    """
    n = len(labels)
    overall = Counter(labels)
    overall_share = {name: overall.get(name, 0) / n for name in label_names}
    columns: dict[str, list[GroupRepresentation]] = {}
    flagged = 0
    for column, values in groups.items():
        by_group: dict[str, Counter] = {}
        for value, label in zip(values, labels):
            by_group.setdefault(str(value), Counter())[label] += 1
        rows = []
        for group, counts in sorted(by_group.items(), key=lambda kv: -sum(kv[1].values())):
            size = sum(counts.values())
            share = {name: counts.get(name, 0) / size for name in label_names}
            flags = []
            if size < min_count:
                flags.append(f"only {size} rows (< {min_count})")
            if size / n < min_share:
                flags.append(f"{size / n:.1%} of rows (< {min_share:.0%})")
            missing = [name for name in label_names if counts.get(name, 0) == 0]
            if missing:
                flags.append(f"no rows labelled {', '.join(missing)}")
            skewed = [name for name in label_names if abs(share[name] - overall_share[name]) > max_label_gap]
            if skewed and not missing:
                flags.append("label balance differs from overall for " + ", ".join(skewed))
            flagged += bool(flags)
            rows.append(GroupRepresentation(group=group, n=size, share=size / n, label_share=share, flags=flags))
        columns[column] = rows
    return RepresentationResult(dataset=dataset, n=n, overall_label_share=overall_share, columns=columns, flagged=flagged)
