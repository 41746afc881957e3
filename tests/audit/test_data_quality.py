"""Data cleaning: label issues (cleanlab on out-of-fold probabilities), duplicates, leakage, and --fix with its log."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from conftest import make_rows, run_cli, write_csv
from trustfm.audit.data_quality.issues import clean_plan, find_issues


def test_findings_on_known_duplicates_and_leakage_with_given_features():
    texts = ["good film", "Good film!", "bad film", "good film", "a different text", "bad  film"]
    labels = ["pos", "pos", "neg", "neg", "pos", "neg"]
    rows = np.arange(1, 7)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 8))
    features[5] = features[2] + 1e-3  # near duplicate by embedding as well as normalised
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    test_texts = ["BAD FILM", "unseen"]
    test_features = np.vstack([features[2], -features[4]])
    findings = find_issues(texts, labels, rows, features, ["neg", "pos"], test_texts=test_texts,
                           test_rows=np.array([1, 2]), test_features=test_features, folds=2)
    kinds = {(d.row, d.duplicate_of): d.kind for d in findings.duplicates}
    assert kinds == {(2, 1): "normalised", (4, 1): "exact", (6, 3): "normalised"}
    assert next(d for d in findings.duplicates if d.row == 4).same_label is False  # conflicting labels
    assert [(l.row, l.duplicate_of, l.kind) for l in findings.leakage] == [(1, 3, "normalised")]
    plan = clean_plan(findings)
    assert {a.row: a.reason for a in plan if a.reason != "label_issue"} == {2: "duplicate", 3: "leakage", 4: "duplicate",
                                                                           6: "duplicate"}


def test_data_check_finds_flipped_labels_and_fix_writes_a_logged_clean_copy(tmp_path):
    rows = make_rows(300, seed=3)
    flipped = list(range(0, 300, 30))  # 10 labels flipped on purpose
    for i in flipped:
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    rows.append(dict(rows[5], id="dup"))  # an exact duplicate of data row 6
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", [dict(rows[7], id="t1"), {"id": "t2", "text": "nothing like it", "label": "pos",
                                                                      "group": "a"}])
    out = tmp_path / "clean.csv"
    result = run_cli(["data", "check", str(train), "--id-column", "id", "--test-data", str(test), "--fix",
                                   str(out), "--format", "json"], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    issues = report["issues"]
    log = [json.loads(line) for line in (tmp_path / "clean.csv.log.jsonl").read_text().splitlines()]
    flagged = {e["row"] for e in log if e["reason"] == "label_issue"}
    found = flagged & {i + 1 for i in flipped}
    assert len(found) >= 7, (flagged, issues)  # most planted errors are found ...
    assert len(flagged - {i + 1 for i in flipped}) <= 10  # ... without flagging much else
    assert issues["duplicates"].get("exact") == 1 and issues["leakage"] >= 1
    assert {"row": 301, "reason": "duplicate"}.items() <= next(e for e in log if e["row"] == 301).items()
    assert any(e["reason"] == "leakage" and e["row"] == 8 for e in log)
    with out.open(encoding="utf-8") as handle:
        kept = list(csv.DictReader(handle))
    assert len(kept) == 301 - len({e["row"] for e in log}) == report["fix"]["rows_out"]
    assert all(r["text"] not in (tmp_path / "clean.csv.log.jsonl").read_text() for r in rows[:50])  # no texts in the log

    relabelled = tmp_path / "relabelled.csv"
    result = run_cli(["data", "check", str(train), "--id-column", "id", "--fix", str(relabelled), "--relabel",
                                   "--format", "json"], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    with relabelled.open(encoding="utf-8") as handle:
        fixed = {r["id"]: r["label"] for r in csv.DictReader(handle)}
    repaired = [i for i in flipped if rows[i]["id"] in fixed and fixed[rows[i]["id"]] != rows[i]["label"]]
    assert len(repaired) >= 7
