"""The CLI as a user runs it: real subprocesses, real exit codes, real files."""

import json
import os

import pytest

from conftest import make_rows, run_cli, write_csv

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args, check=False):
    result = run_cli([str(a) for a in args], capture_output=True, text=True, env=ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_missing_label_column_exits_3_naming_file_and_column(tmp_path, tiny_model_dir):
    path = tmp_path / "nolabel.csv"
    path.write_text("text,other\nhello,1\nworld,2\n")
    result = run("train", "--data", path, "--model", tiny_model_dir, "-o", tmp_path / "r")
    assert result.returncode == 3
    assert str(path) in result.stderr and "'label'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_config_errors_exit_2_without_traceback(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  learning_rte: 0.1\n")
    result = run("train", config)
    assert result.returncode == 2
    assert "train.learning_rte: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert run("train", "--no-such-flag").returncode == 2
    assert run("evaluate", tmp_path).returncode == 2  # not a run folder


def test_data_check_counts_problems_and_exits_3_on_error_policy(tmp_path, tiny_model_dir):
    rows = make_rows(24)  # 12 per class: above data.min_class_rows (10) after a drop
    rows[4]["text"] = " "
    rows[7]["label"] = ""
    path = write_csv(tmp_path / "d.csv", rows)
    result = run("data", "check", path, "--model", tiny_model_dir, "--format", "json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["problems"] == {"empty_text": 1, "null_label": 1}
    assert report["first_rows"] == {"empty_text": [5], "null_label": [8]}
    assert "row 5" in result.stderr
    ok = run("data", "check", path, "--model", tiny_model_dir, "--set", "data.on_problem.empty_text=drop",
             "--set", "data.on_problem.null_label=drop", "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["usable_rows"] == 22


def test_train_evaluate_predict_report_round_trip(tmp_path, tiny_model_dir, tiny_data):
    run_dir = tmp_path / "run"
    rows = make_rows(60, seed=9)
    rows[3]["text"] = ""
    dirty = write_csv(tmp_path / "dirty.csv", rows)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data:\n  train: {dirty}\n  max_length: 32\n  id_column: id\n"
        "  on_problem: {empty_text: drop}\n"
        f"model:\n  name_or_path: {tiny_model_dir}\n"
        "train:\n  epochs: 1\n  batch_size: 8\nevaluate:\n  bootstrap_samples: 50\n"
    )
    trained = run("train", config, "-o", run_dir, "--quiet", "--format", "json", check=True)
    summary = json.loads(trained.stdout)
    assert summary["performance"]["n"] > 0
    saved = (run_dir / "config.yaml").read_text()
    assert "learning_rate" in saved and str(run_dir) in saved  # resolved config, defaults filled in
    rejected = [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [{"file": str(dirty), "row": 4, "column": "text", "kind": "empty_text",
                         "reason": "empty or whitespace-only text"}]

    evaluated = json.loads(run("evaluate", run_dir, "--format", "json", check=True).stdout)
    assert evaluated == json.loads((run_dir / "results" / "performance.json").read_text())
    external = json.loads(run("evaluate", run_dir, "--data", tiny_data, "--format", "json", check=True).stdout)
    assert external["n"] == 400 and (run_dir / "results" / "performance-train.json").exists()

    predicted = json.loads(run("predict", run_dir, "--text", "great service", "--text", "awful", "--format", "json",
                               check=True).stdout)
    assert len(predicted) == 2 and set(predicted[0]["probabilities"]) == {"neg", "pos"}
    assert abs(sum(predicted[0]["probabilities"].values()) - 1) < 1e-5
    out = tmp_path / "pred.jsonl"
    run("predict", run_dir, "--data", tiny_data, "-o", out, "--format", "json", check=True)
    lines = out.read_text().splitlines()
    assert len(lines) == 400 and json.loads(lines[0])["row"] == 1
    # with -o and a table, the rows go to the file only; stdout (redirected) says where, at full width
    summary = run("predict", run_dir, "--data", tiny_data, "-o", out, check=True).stdout
    assert summary.strip() == f"400 predictions written to {out}"

    reported = json.loads(run("report", run_dir, "--format", "json", check=True).stdout)
    data = json.loads(open(reported["json"]).read())
    assert data["results"]["performance"] == evaluated
    provenance = data["provenance"]
    assert provenance["seed"] == 42 and provenance["started"] and provenance["finished"]
    assert set(provenance["data_sha256"]) == {str(dirty)}
    assert "model.safetensors" in provenance["model_sha256"] and "torch" in provenance["versions"]
    html = open(reported["html"]).read()
    assert "<svg" in html
    # self-contained: nothing is loaded from elsewhere when the file opens
    import re

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\((https?:|//)|@import""", html)


def test_resume_refuses_extra_settings(tmp_path):
    assert run("train", "--resume", tmp_path, "--epochs", "2").returncode == 2


MISSING = "/nonexistent/trustfm-test/path"


@pytest.mark.parametrize("args", [
    ["train", "--data", MISSING], ["train", "--resume", MISSING], ["evaluate", MISSING], ["audit", "all", MISSING],
    ["audit", "fairness", MISSING], ["audit", "robustness", MISSING], ["audit", "attacks", MISSING],
    ["audit", "membership", MISSING], ["audit", "ood", MISSING, "--ood-data", MISSING],
    ["audit", "output-rules", MISSING, "--rules", MISSING], ["audit", "ensemble", MISSING, "--member", MISSING],
    ["report", MISSING], ["gate", MISSING, "--policy", MISSING], ["verify", MISSING],
    ["predict", MISSING, "--text", "hi"], ["explain", MISSING, "--text", "hi"], ["data", "check", MISSING],
    ["data", "scan", MISSING], ["data", "redact", MISSING, "-o", "/tmp/trustfm-out.csv"],
    ["ledger", "abandon", MISSING], ["ledger", "show", "--ledger", "/"],
], ids=lambda a: " ".join(a[:2]))
def test_every_path_argument_answers_a_missing_path_with_one_line(args, capsys):
    from trustfm.cli import main

    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (2, 3, 5), err
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err


def test_an_unexpected_error_prints_one_masked_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    import trustfm.data.io
    from trustfm.cli import main

    def boom(*args, **kwargs):
        raise RuntimeError("cannot handle 'Priya Raghunathan' at +44 7700 900123, id 55512345")

    monkeypatch.setattr(trustfm.data.io, "read_table_source", boom)
    (tmp_path / "d.csv").write_text("text,label\na,1\n")
    assert main(["data", "check", str(tmp_path / "d.csv"), "--no-issues"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Priya" not in err and "55512345" not in err
    first, second = [line for line in err.splitlines() if line.strip()]
    assert first.startswith("internal error: RuntimeError at trustfm.cli.data_check:")
    assert "--debug" in second and "TRUSTFM_DEBUG" in second
    with pytest.raises(RuntimeError):
        main(["data", "check", str(tmp_path / "d.csv"), "--no-issues", "--debug"])
    monkeypatch.setenv("TRUSTFM_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["data", "check", str(tmp_path / "d.csv"), "--no-issues"])


def test_tables_keep_their_full_width_when_output_is_redirected(tmp_path):
    note = "x" * 30
    path = tmp_path / ("a-rather-long-folder-name-" * 3) / "data.csv"
    path.parent.mkdir()
    path.write_text("TEXT,Label\n" + "".join(f"text {note} {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30)))
    out = run("data", "check", path, "--no-issues", check=True).stdout  # stdout is a pipe here, not a terminal
    lines = out.splitlines()
    assert max(len(line) for line in lines) > 100
    assert any("column 'TEXT' read as 'text' (case or spaces differ)" in line for line in lines)  # not folded
