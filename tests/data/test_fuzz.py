"""Property tests (Hypothesis) over the readers and the validator: project errors only, never a crash.

Any exception other than :class:`~trustfm.errors.TrustfmError` fails. Bounded: each property runs a fixed
number of examples with no shrinking deadline, well under a minute in all.
"""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustfm.config.schema import ProblemPolicies
from trustfm.data.io import read_table_source
from trustfm.data.validate import validate_table
from trustfm.errors import TrustfmError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt"]
# printable text without surrogates; at least one visible character (blank texts are a validation problem)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40).filter(
    lambda s: s.strip() and not s.startswith("\ufeff"))


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_read_or_refused_with_a_project_error(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        read_table_source(path, columns=["text", "label"])
        read_table_source(path)
    except TrustfmError:
        pass


@FUZZ
@given(
    rows=st.lists(st.tuples(TEXT, st.sampled_from(["pos", "neg", "0", "1"])), min_size=1, max_size=30),
    delimiter=st.sampled_from([",", "\t", ";", "|"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]),
    line_end=st.sampled_from(["\n", "\r\n"]),
    header_case=st.sampled_from(["text,label", "Text,Label", " TEXT , label "]),
)
def test_any_csv_dialect_and_encoding_reads_back_the_texts(tmp_path, rows, delimiter, quoting, encoding, line_end,
                                                           header_case):
    if encoding == "utf-16-le" and any(ord(ch) > 0xFF for text, _ in rows for ch in text):
        encoding = "utf-16"  # without a byte-order mark only mostly-Latin text is recognisable as UTF-16
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=line_end)
    writer.writerow([h for h in header_case.split(",")])
    writer.writerows(rows)
    path = tmp_path / "dialect.csv"
    path.write_bytes(buffer.getvalue().encode(encoding))
    frame, source = read_table_source(path, columns=["text", "label"])
    assert frame["text"].tolist() == [t for t, _ in rows]
    assert frame["label"].tolist() == [label for _, label in rows]
    assert source.delimiter == delimiter


@FUZZ
@given(records=st.lists(st.dictionaries(st.sampled_from(["text", "label", "Text", "other", ""]),
                                        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT,
                                                  st.lists(st.integers(), max_size=2),
                                                  st.dictionaries(TEXT, st.integers(), max_size=2)),
                                        max_size=4),
                        max_size=10),
       blank=st.booleans(), as_array=st.booleans())
def test_any_json_lines_are_read_or_refused_and_validation_never_crashes(tmp_path, records, blank, as_array):
    import json

    if as_array:
        content = json.dumps(records)
    else:
        lines = [json.dumps(r) for r in records]
        if blank and lines:
            lines.insert(len(lines) // 2, "")
        content = "\n".join(lines)
    path = tmp_path / "fuzz.jsonl"
    path.write_text(content, encoding="utf-8")
    try:
        frame, _ = read_table_source(path, columns=["text", "label"])
        validate_table(frame, file=str(path), text_column="text", label_column="label",
                       policies=ProblemPolicies(**{k: "drop" for k in ("empty_text", "null_label", "not_text")}))
    except TrustfmError:
        pass


VALUES = st.one_of(st.none(), st.just(math.nan), st.booleans(), st.integers(), st.floats(allow_nan=True),
                   st.text(max_size=20), st.just("bad \udcff bytes"), st.just("ctl\x00\u202e"),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FUZZ
@given(columns=st.lists(st.tuples(VALUES, VALUES, VALUES), min_size=0, max_size=15),
       policy=st.sampled_from(["error", "drop"]), control=st.sampled_from(["strip", "keep", "error", "drop"]),
       known=st.one_of(st.none(), st.just(["1", "pos"])))
def test_validation_of_any_values_returns_or_raises_a_data_error(columns, policy, control, known):
    frame = pd.DataFrame(columns, columns=["text", "label", "id"], dtype=object)
    policies = ProblemPolicies(**{k: policy for k in ("empty_text", "null_label", "unseen_label", "duplicate_id",
                                                      "undecodable", "not_text")}, control_characters=control)
    try:
        part = validate_table(frame, file="f.csv", text_column="text", label_column="label", id_column="id",
                              policies=policies, known_labels=known)
    except TrustfmError:
        return
    assert len(part) + len(part.rejected) == len(frame)
    assert all(isinstance(t, str) and t.strip() for t in part.texts)
