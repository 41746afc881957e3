"""A corpus of malformed inputs, each with its expected outcome, run through ``trustfm data check``.

Every case either fails with exit 3 and one line naming the file (and row and
column where there is one), or is read correctly and the output says how.
Never a traceback, never a silent guess. Files are made here, not stored.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from trustfm.cli import main

GOOD = "text,label\ngood movie,pos\nbad movie,neg\nfine film,pos\n"
GOOD_JSONL = '{"text": "good movie", "label": "pos"}\n{"text": "bad movie", "label": "neg"}\n'
SECRET = "Priya Raghunathan 07700 900123"  # planted personal data: must never appear in an error


@dataclass
class Case:
    name: str
    filename: str
    content: bytes | Callable[[Path], None]
    exit_code: int  # 0: read; 3: data error
    expect: str  # a substring of the error line (exit 3) or of the read notes / description (exit 0)
    rows: int | None = None  # rows read, for exit 0
    row: int | None = None  # the row the error names
    column: str | None = None  # the column the error names
    settings: tuple[str, ...] = ("data.min_class_rows=1",)  # the corpus files are tiny


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()



def _hf_dict(path: Path) -> None:
    import datasets

    frame = pd.DataFrame({"text": ["a", "b"], "label": ["pos", "neg"]})
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame)}).save_to_disk(str(path))


RANDOM = random.Random(0).randbytes(4000)
XLSX = _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
FRAME = pd.DataFrame({"text": ["good movie", "bad movie"], "label": ["pos", "neg"]})

CASES = [
    # --- not tables at all
    Case("random bytes as csv", "d.csv", RANDOM, 3, "binary data"),
    Case("random bytes as parquet", "d.parquet", RANDOM, 3, "binary data"),
    Case("zero bytes as jsonl", "d.jsonl", b"\x00" * 500, 3, "binary data"),
    Case("html page as csv", "d.csv", b"<!DOCTYPE html>\n<html><body><table></table></body></html>", 3, "HTML page"),
    Case("html page as jsonl", "d.jsonl", b"\n  <html lang='en'><head></head></html>", 3, "HTML page"),
    Case("xml as csv", "d.csv", b"<?xml version='1.0'?><rows/>", 3, "XML document"),
    Case("zip as csv", "d.csv", _zip({"data.csv": GOOD.encode()}), 3, "zip archive"),
    Case("xlsx as csv", "d.csv", XLSX, 3, "Excel workbook"),
    Case("xlsx as parquet", "d.parquet", XLSX, 3, "Excel workbook"),
    Case("xls as csv", "d.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), 3, "Excel/Office"),
    Case("pdf as csv", "d.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 3, "PDF"),
    Case("png as csv", "d.csv", b"\x89PNG\r\n\x1a\n" + bytes(100), 3, "PNG image"),
    Case("sqlite as csv", "d.csv", b"SQLite format 3\x00" + bytes(200), 3, "SQLite"),
    Case("bzip2 as csv", "d.csv", b"BZh91AY&SY" + bytes(50), 3, "bzip2"),
    Case("broken gzip as csv", "d.csv", b"\x1f\x8b\x08\x00" + b"garbage", 3, "gzip"),
    Case("damaged parquet", "d.parquet", b"PAR1" + RANDOM[:300] + b"PAR1", 3, "Parquet"),
    # --- extensions that lie, compression: read by content, and said
    Case("gzip csv", "d.csv", gzip.compress(GOOD.encode()), 0, "gzip-compressed", rows=3),
    Case("gzip jsonl", "d.jsonl", gzip.compress(GOOD_JSONL.encode()), 0, "gzip-compressed", rows=2),
    Case("csv named parquet", "d.parquet", GOOD.encode(), 0, "named .parquet but holds delimited text", rows=3),
    Case("csv named jsonl", "d.jsonl", GOOD.encode(), 0, "named .jsonl but holds delimited text", rows=3),
    Case("jsonl named csv", "d.csv", GOOD_JSONL.encode(), 0, "named .csv but holds JSON", rows=2),
    Case("parquet named csv", "d.csv", _parquet(FRAME), 0, "named .csv but holds Parquet", rows=2),
    Case("csv with unknown suffix", "d.txt", GOOD.encode(), 0, "delimiter comma", rows=3),
    # --- delimiters
    Case("tab separated csv", "d.csv", GOOD.replace(",", "\t").encode(), 0, "separated by tabs", rows=3),
    Case("semicolon csv", "d.csv", b"text;label\ngood, really;pos\nbad;neg\n", 0, "semicolons", rows=2),
    Case("pipe csv", "d.csv", b"text|label\ngood|pos\nbad|neg\n", 0, "pipes", rows=2),
    Case("comma tsv", "d.tsv", GOOD.encode(), 0, "separated by commas", rows=3),
    Case("crlf line ends", "d.csv", GOOD.replace("\n", "\r\n").encode(), 0, "delimiter comma", rows=3),
    Case("quoted multi-line field", "d.csv", b'text,label\n"two\nlines",pos\nbad,neg\n', 0, "csv", rows=2),
    Case("ragged row", "d.csv", b"text,label\ngood,pos\nbad,neg,extra,more\n", 3,
         "4 fields where the header has 2", row=2),
    Case("unclosed quote", "d.csv", b'text,label\n"good,pos\nbad,neg\n', 3, "malformed CSV"),
    # --- headers
    Case("duplicate label column", "d.csv", b"text,label,label\ngood,pos,neg\nbad,neg,pos\n", 3,
         "more than once", column="label"),
    Case("two columns equal up to case", "d.csv", b"Text,TEXT,label\na,b,pos\n", 3, "more than once",
         column="text"),
    Case("header in upper case", "d.csv", b"TEXT,Label\ngood,pos\nbad,neg\n", 0, "read as 'text'", rows=2),
    Case("header with stray spaces", "d.csv", b" text , label \ngood,pos\nbad,neg\n", 0, "read as 'label'", rows=2),
    Case("exact name preferred over a case variant", "d.csv", b"text,Text,label\na,b,pos\nc,d,neg\n", 0, "csv",
         rows=2),
    Case("unnamed index column", "d.csv", b",text,label\n0,good,pos\n1,bad,neg\n", 0, "csv", rows=2),
    Case("empty header line", "d.csv", b"\ngood,pos\n", 3, "header"),
    Case("a lone carriage return for a header (found by the fuzzer)", "d.csv", b"\r!", 3, "(the header) is empty"),
    Case("missing text column", "d.csv", b"review,label\ngood,pos\n", 3, "required column is missing",
         column="text"),
    Case("no header row, personal data first", "d.csv", f"{SECRET},pos\nok,neg\n".encode(), 3,
         "does the file have a header row", column="text"),
    Case("many extra columns", "d.csv",
         ("text,label," + ",".join(f"c{i}" for i in range(50)) + "\n"
          + "good,pos," + ",".join("x" for _ in range(50)) + "\n").encode(), 0, "csv", rows=1),
    # --- encodings
    Case("utf-8 bom", "d.csv", codecs.BOM_UTF8 + GOOD.encode(), 0, "byte-order mark", rows=3),
    Case("utf-16 le bom", "d.csv", GOOD.encode("utf-16"), 0, "UTF-16", rows=3),
    Case("utf-16 be bom", "d.csv", codecs.BOM_UTF16_BE + GOOD.encode("utf-16-be"), 0, "UTF-16", rows=3),
    Case("utf-16 le without bom", "d.csv", GOOD.encode("utf-16-le"), 0, "recognised by its zero bytes", rows=3),
    Case("utf-32 bom", "d.csv", GOOD.encode("utf-32"), 0, "UTF-32", rows=3),
    Case("utf-16 jsonl", "d.jsonl", GOOD_JSONL.encode("utf-16"), 0, "UTF-16", rows=2),
    Case("truncated utf-16", "d.csv", GOOD.encode("utf-16")[:-1], 3, "not valid UTF-16"),
    Case("invalid utf-8 in a row", "d.csv", b"text,label\ngood,pos\nbad \xff\xfe movie,neg\n", 3, "not valid UTF-8",
         row=2, column="text"),
    Case("latin-1 file", "d.csv", "text,label\ncafé crème,pos\nbad,neg\n".encode("latin-1"), 3, "Latin-1",
         row=1, column="text"),
    Case("utf-8 cut mid-character", "d.csv", b"text,label\ngood,pos\nna\xc3", 3, "UTF-8", row=2),
    Case("nul inside a text", "d.csv", b"text,label\ngo\x00od,pos\nbad,neg\n", 0, "control", rows=2),
    Case("control characters", "d.csv", b"text,label\nhello\x07\x1b there,pos\nbad,neg\n", 0, "control", rows=2),
    Case("bidi override", "d.csv", "text,label\nabc\u202edcba,pos\nbad,neg\n".encode(), 0, "bidi", rows=2),
    # --- rows
    Case("zero-byte file", "d.csv", b"", 3, "empty"),
    Case("whitespace-only file", "d.csv", b"  \n\n \n", 3, "empty"),
    Case("header only", "d.csv", b"text,label\n", 3, "no data rows"),
    Case("header then blank lines", "d.csv", b"text,label\n\n\n", 3, "no data rows"),
    Case("only blank texts", "d.csv", b"text,label\n  ,pos\n,neg\n", 3, "empty or whitespace-only", row=1,
         column="text"),
    Case("blank line in the middle", "d.csv", b"text,label\ngood,pos\n\nbad,neg\n", 3, "empty", row=2),
    Case("blank lines at the end", "d.csv", (GOOD + "\n\n\n").encode(), 0, "blank line(s) at the end", rows=3),
    Case("missing label", "d.csv", b"text,label\ngood,pos\nbad,\n", 3, "missing label", row=2, column="label"),
    Case("a class of one row (a typo)", "d.csv",
         ("text,label\n" + "".join(f"row {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30)) + "odd one,2\n").encode(),
         3, "class '2' has 1 rows, fewer than data.min_class_rows = 10", row=31, column="label", settings=()),
    # --- JSON
    Case("json array", "d.json", json.dumps([{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]).encode(),
         0, "one JSON array", rows=2),
    Case("json array named jsonl", "d.jsonl", b'[{"text": "a", "label": "pos"}]', 0, "one JSON array", rows=1),
    Case("json array of numbers", "d.json", b"[1, 2, 3]", 3, "must be a JSON object", row=1),
    Case("broken json array", "d.json", b'[{"text": "a"', 3, "not valid JSON"),
    Case("jsonl line is an array", "d.jsonl", (GOOD_JSONL + "[1, 2]\n").encode(), 3, "not an array", row=3),
    Case("jsonl line is a string", "d.jsonl", (GOOD_JSONL + '"text"\n').encode(), 3, "not a string", row=3),
    Case("jsonl invalid line", "d.jsonl", (GOOD_JSONL + '{"text": "x", "label": }\n').encode(), 3, "not valid JSON",
         row=3),
    Case("jsonl nested text", "d.jsonl", (GOOD_JSONL + '{"text": {"body": "x"}, "label": "pos"}\n').encode(), 3,
         "a JSON object, not a text", row=3, column="text"),
    Case("jsonl nested label", "d.jsonl", (GOOD_JSONL + '{"text": "x", "label": ["pos"]}\n').encode(), 3,
         "a JSON array, not a text", row=3, column="label"),
    Case("jsonl key missing in one line", "d.jsonl", (GOOD_JSONL + '{"text": "x"}\n').encode(), 3, "missing label",
         row=3, column="label"),
    Case("jsonl key missing everywhere", "d.jsonl", b'{"body": "x", "label": "pos"}\n', 3, "required key is missing",
         column="text"),
    Case("jsonl keys in another case", "d.jsonl", b'{"Text": "a", "LABEL": "pos"}\n{"Text": "b", "LABEL": "neg"}\n',
         0, "read as 'text'", rows=2),
    Case("jsonl blank line in the middle", "d.jsonl", ('{"text": "a", "label": "pos"}\n\n' + GOOD_JSONL).encode(), 3,
         "empty", row=2),
    Case("jsonl blank lines at the end", "d.jsonl", (GOOD_JSONL + "\n\n").encode(), 0, "blank line(s)", rows=2),
    Case("jsonl numeric text and label", "d.jsonl", b'{"text": 12345, "label": 1}\n{"text": "b", "label": 0}\n', 0,
         "jsonl", rows=2),
    # --- paths
    Case("missing path", "absent.csv", lambda p: None, 3, "does not exist"),
    Case("plain folder", "folder", lambda p: p.mkdir(), 3, "is a folder"),
    Case("dataset dict folder", "dsdict", _hf_dict, 3, "DatasetDict"),
]


def _materialise(case: Case, folder: Path) -> Path:
    path = folder / case.filename
    if callable(case.content):
        case.content(path)
    else:
        path.write_bytes(case.content)
    return path


def test_the_corpus_is_large_and_covers_both_outcomes():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.exit_code == 0 for c in CASES) >= 20 and sum(c.exit_code == 3 for c in CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input(case, tmp_path, capsys):
    path = _materialise(case, tmp_path)
    settings = [flag for setting in case.settings for flag in ("--set", setting)]
    code = main(["data", "check", str(path), "--no-issues", "--format", "json", *settings])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    assert code == case.exit_code, (out, err)
    if case.exit_code:
        lines = [line for line in err.splitlines() if line.strip()]
        message = " ".join(err.split())
        assert lines[-1].startswith("error:"), err
        assert case.expect in message, message
        assert f"file {path}" in message or str(path) in message
        if case.row is not None:
            assert f"row {case.row}" in message, message
        if case.column is not None:
            assert f"column '{case.column}'" in message, message
    else:
        report = json.loads(out)
        described = report["read_as"] + " | " + " | ".join(report["read_notes"])
        assert case.expect in described, described
        assert report["rows"] == case.rows


def test_a_wide_file_reads_only_the_configured_columns(tmp_path):
    from trustfm.data.io import read_table_source

    width = 3000
    header = ",".join(["text", "label"] + [f"c{i}" for i in range(width)])
    body = "\n".join(f"text {r},{'pos' if r % 2 else 'neg'}," + ",".join("0.5" for _ in range(width))
                     for r in range(200))
    (tmp_path / "wide.csv").write_text(header + "\n" + body + "\n")
    frame, source = read_table_source(tmp_path / "wide.csv", columns=["text", "label"])
    assert list(frame.columns) == ["text", "label"] and len(frame) == 200


def test_two_hundred_thousand_rows_are_checked_quickly(tmp_path):
    import time

    rows = "\n".join(f"short text number {i},{'pos' if i % 3 else 'neg'}" for i in range(200_000))
    (tmp_path / "long.csv").write_text("text,label\n" + rows + "\n")
    start = time.perf_counter()
    code = main(["data", "check", str(tmp_path / "long.csv"), "--no-issues", "--format", "json"])
    assert code == 0
    assert time.perf_counter() - start < 120


def test_encrypted_files_fail_cleanly_with_a_wrong_key_or_cut_short(tmp_path, monkeypatch, capsys):
    from trustfm.encryption import encrypt_bytes

    key, other = os.urandom(32), os.urandom(32)
    blob = encrypt_bytes(GOOD.encode(), key)
    (tmp_path / "good.csv").write_bytes(blob)
    (tmp_path / "cut.csv").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "header-only.csv").write_bytes(blob[:20])  # the format header and part of the nonce
    monkeypatch.setenv("TRUSTFM_ENCRYPTION_KEY", key.hex())
    assert main(["data", "check", str(tmp_path / "good.csv"), "--no-issues", "--format", "json",
                 "--set", "data.min_class_rows=1"]) == 0
    capsys.readouterr()
    for name in ("cut.csv", "header-only.csv"):
        assert main(["data", "check", str(tmp_path / name), "--no-issues"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "cut short" in " ".join(err.split())
    monkeypatch.setenv("TRUSTFM_ENCRYPTION_KEY", other.hex())
    assert main(["data", "check", str(tmp_path / "good.csv"), "--no-issues"]) == 2
    assert "wrong encryption key" in " ".join(capsys.readouterr().err.split())
