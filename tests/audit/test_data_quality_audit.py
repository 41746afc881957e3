"""The data quality audit on a run: planted label errors and leaks are found by row, and no text is recorded."""

from __future__ import annotations

import json

from conftest import make_rows, write_csv
from trustfm.audit.data_quality.plugin import audit_data_quality_run
from trustfm.config import load_config
from trustfm.train.run import train_run


def test_planted_label_errors_and_leaks_are_found_by_row(tmp_path):
    # the real default encoder: label issues need embeddings that mean something
    rows = make_rows(300, seed=3)
    flipped = [i for i in range(0, 300, 30)]  # every 30th row gets the other label
    for i in flipped:
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    test = make_rows(60, seed=4)
    test[:5] = [dict(rows[i], id=f"t{i}") for i in (1, 2, 3, 4, 5)]  # five test rows copy training rows
    train_file, test_file = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", test)
    out = tmp_path / "run"
    train_run(load_config(None, {"data.train": str(train_file), "data.test": str(test_file), "data.id_column": "id",
                                 "data.max_length": 32, "model.name_or_path": "default", "train.epochs": 1,
                                 "data.split.validation": 0.1, "output_dir": str(out)}), show_progress=False)
    result = audit_data_quality_run(out)["data_quality"]
    assert result.rows == 270  # 10% held out for validation
    flagged = {issue.row for issue in result.worst_label_issues}
    assert flagged & {i + 1 for i in flipped}, "no planted label error among the least likely labels"
    # a copied row can fall in the validation split; the others are leaks of the training split
    assert len({d.row for d in result.leaks} & {1, 2, 3, 4, 5}) >= 3
    assert result.metrics()["label_issues"] == result.label_issues
    saved = (out / "results" / "data_quality.json").read_text()
    assert json.loads(saved)["kind"] == "data_quality"
    for row in rows[:50]:  # rows and labels only: no text reaches the result
        assert row["text"] not in saved
