"""Validate a raw table against the column mapping and the per-problem policies.

Each problem has a policy (``error`` stops with a message naming file, row and
column; ``drop`` removes the row and records it). Rejected rows are recorded by
row number, column and reason only: the text itself never goes to the rejection
file, because it may hold personal data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from trustfm.config.schema import ProblemPolicies
from trustfm.data.io import describe_header
from trustfm.errors import DataError


@dataclass(frozen=True)
class Rejection:
    """One dropped row: ``row`` is the 1-based data row in ``file`` (header excluded)."""

    file: str
    row: int
    column: str
    kind: str  # the data.on_problem key: empty_text, null_label, ..., too_long
    reason: str

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column, "kind": self.kind, "reason": self.reason}


@dataclass
class LabelledTexts:
    """Validated rows of one file.

    ``texts[i]`` has label ``labels[i]`` (raw string form), source row ``rows[i]``
    and optional ``ids[i]``; ``groups[col][i]`` holds sensitive attributes kept
    for the fairness audit.
    """

    file: str
    texts: list[str]
    labels: list[str]
    rows: np.ndarray
    ids: list[str] | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    rows_in: int = 0
    notes: list[str] = field(default_factory=list)  # how the file was read and cleaned, one line each
    # sha256 of everything the rows were read from when that is more than the file (a table of image paths and
    # the images); None: the file's own hash
    source_sha256: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def joined(self, other: "LabelledTexts") -> "LabelledTexts":
        """These rows, then ``other``'s (its group columns must be the same); ``file`` names both."""
        return LabelledTexts(
            file=f"{self.file} + {other.file}",
            texts=self.texts + other.texts,
            labels=self.labels + other.labels,
            rows=np.concatenate([self.rows, other.rows]),
            ids=(self.ids or [""] * len(self)) + (other.ids or [""] * len(other))
            if self.ids is not None or other.ids is not None else None,
            groups={k: v + other.groups.get(k, ["unknown"] * len(other)) for k, v in self.groups.items()},
            rows_in=self.rows_in + other.rows_in,
        )

    def subset(self, index: Sequence[int] | np.ndarray) -> "LabelledTexts":
        """Rows at positions ``index`` (rejections stay with the parent)."""
        index = np.asarray(index, dtype=np.int64)
        pick = lambda values: [values[i] for i in index]  # noqa: E731
        return LabelledTexts(
            file=self.file,
            texts=pick(self.texts),
            labels=pick(self.labels),
            rows=self.rows[index],
            ids=pick(self.ids) if self.ids is not None else None,
            groups={k: pick(v) for k, v in self.groups.items()},
            rows_in=len(index),
        )


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


# C0 and C1 control characters except tab, newline and carriage return, and the bidirectional embedding,
# override and isolate controls ("Trojan Source"): invisible, they change what a reader sees, not what the
# model reads. Left-to-right / right-to-left marks (U+200E/F) are ordinary in Arabic and Hebrew text and stay.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_text(text: str) -> str:
    """Lower-cased letters and digits only: texts equal after it are "normalised duplicates"."""
    return _NOT_ALNUM.sub("", text.lower())


def _not_text(value: object) -> str | None:
    """What a non-scalar value is (JSON object / array), or None for a scalar."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a JSON array"
    return None


def _has_surrogates(value: object) -> bool:
    # read_table keeps undecodable bytes as lone surrogates (surrogateescape)
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _label_text(value: object) -> str:
    # JSONL / Parquet may hold numeric labels; 1 and 1.0 must be the same class
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def labelled_columns(config, input_column: str, *,
                     labelled: bool) -> tuple[str | None, str | None, list[str], list[str]]:
    """(label column, id column, group columns, every column to read) of a ``DataConfig`` whose inputs are in
    ``input_column``; unlabelled data (for prediction) needs the input column only."""
    label_column = config.label_column if labelled else None
    id_column = config.id_column if labelled else None
    group_columns = list(config.group_columns) if labelled else []
    wanted = [c for c in (input_column, label_column, id_column) if c] + group_columns
    return label_column, id_column, group_columns, wanted


def validate_table(
    frame: pd.DataFrame,
    *,
    file: str,
    text_column: str,
    label_column: str | None,
    id_column: str | None = None,
    group_columns: Sequence[str] = (),
    policies: ProblemPolicies | None = None,
    known_labels: Sequence[str] | None = None,
) -> LabelledTexts:
    """Check ``frame`` and return the rows that pass, plus the rejections.

    ``label_column=None`` validates unlabelled data (for prediction). With
    ``known_labels`` given (evaluation data), labels outside it are problems of
    kind ``unseen_label``.
    """
    policies = policies or ProblemPolicies()
    required = [text_column] + ([label_column] if label_column else [])
    required += ([id_column] if id_column else []) + list(group_columns)
    for column in required:
        if column not in frame.columns:
            raise DataError(
                f"required column is missing ({describe_header([str(c) for c in frame.columns])})",
                file=file,
                column=column,
            )

    n = len(frame)
    keep = np.ones(n, dtype=bool)
    rejected: list[Rejection] = []

    def problem(kind: str, row_index: int, column: str, reason: str) -> None:
        if getattr(policies, kind) == "error":
            raise DataError(
                f"{reason} (set data.on_problem.{kind}: drop to drop such rows)",
                file=file,
                row=row_index + 1,
                column=column,
            )
        if keep[row_index]:
            keep[row_index] = False
            rejected.append(Rejection(file, row_index + 1, column, kind, reason))

    used = [c for c in required]
    values = {c: frame[c].tolist() for c in used}
    for column in used:
        for i, value in enumerate(values[column]):
            if _has_surrogates(value):
                problem("undecodable", i, column, "bytes that are not valid UTF-8 (a file in another encoding, such as "
                                                  "Latin-1 or cp1252, must be converted to UTF-8 first)")

    for column in used:
        for i, value in enumerate(values[column]):
            what = _not_text(value)
            if what is not None:
                problem("not_text", i, column, f"{what}, not a text")

    texts = values[text_column]
    control = policies.control_characters
    stripped = 0
    for i, text in enumerate(texts):
        if not keep[i]:
            continue
        if control != "keep" and isinstance(text, str) and CONTROL_CHARACTERS.search(text):
            if control == "strip":
                texts[i] = text = CONTROL_CHARACTERS.sub("", text)
                stripped += 1
            else:
                problem("control_characters", i, text_column, "control or bidirectional-override characters")
                continue
        if _is_null(text) or not str(text).strip():
            problem("empty_text", i, text_column, "empty or whitespace-only text")
    notes = []
    if stripped:
        notes.append(f"control or bidi-override characters removed from {stripped} text(s) "
                     "(data.on_problem.control_characters: strip)")

    labels: list[str] = [""] * n
    if label_column:
        known = set(known_labels) if known_labels is not None else None
        for i, value in enumerate(values[label_column]):
            if not keep[i] and _not_text(value):
                continue
            if _is_null(value) or not str(value).strip():
                problem("null_label", i, label_column, "missing label")
                continue
            labels[i] = _label_text(value)
            if known is not None and labels[i] not in known:
                problem("unseen_label", i, label_column, "label not seen in training data")

    ids: list[str] | None = None
    if id_column:
        ids = ["" if _is_null(v) else str(v) for v in values[id_column]]
        first_seen: dict[str, int] = {}
        for i, value in enumerate(ids):
            if value in first_seen:
                problem("duplicate_id", i, id_column, f"id repeats data row {first_seen[value] + 1}")
            else:
                first_seen[value] = i

    index = np.flatnonzero(keep)
    rejected.sort(key=lambda r: r.row)
    return LabelledTexts(
        file=file,
        texts=[str(texts[i]) for i in index],
        labels=[labels[i] for i in index],
        rows=index + 1,
        ids=[ids[i] for i in index] if ids is not None else None,
        groups={c: ["" if _is_null(values[c][i]) else str(values[c][i]) for i in index] for c in group_columns},
        rejected=rejected,
        rows_in=n,
        notes=notes,
    )


def label_order(labels: Sequence[str]) -> list[str]:
    """Class names in id order: numeric labels sort as numbers, others alphabetically."""
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=lambda s: float(s))
    except ValueError:
        return unique
