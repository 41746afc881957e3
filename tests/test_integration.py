"""End to end with the real default model (all-MiniLM-L6-v2) and the real data in ../shared/data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli, shared_data

pytestmark = pytest.mark.integration
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_demo_runs_the_whole_flow_and_the_mitigation_reduces_the_planted_gap(tmp_path):
    out = tmp_path / "demo"
    # the tour as `make demo` runs it, with smaller audit budgets: the suite's longest test stays short
    result = run_cli(["demo", "-o", str(out), "--quiet", "--format", "json", "--max-examples", "20"], env=ENV)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for name in ("baseline", "mitigated"):
        assert Path(summary["runs"][name]["report"]).is_file()
    baseline = json.loads((out / "baseline" / "report.json").read_text())
    assert baseline["provenance"]["config"]["data"]["group_columns"] == ["gender"]
    assert "Base model: all-MiniLM-L6-v2 (the default" in (out / "baseline" / "model_card.md").read_text()
    base = baseline["provenance"]["base_model"]
    assert base["name_or_path"] == "default" and "model.safetensors" in base["weights_sha256"]
    # every audit that applies ran on the baseline, and the report has a section for each
    ran = {a["audit"] for a in baseline["results"]["audits"]["audits"] if a["status"] == "ran"}
    assert ran >= {"performance", "fairness", "explanations", "robustness", "attacks", "membership"}
    accuracy = baseline["results"]["performance"]["accuracy"]["value"]
    assert 0.7 <= accuracy < 0.99  # hard enough that the numbers mean something
    # the planted bias is found, and counterfactual augmentation reduces it
    comparison = summary["fairness_comparison"]
    gap = {row["metric"]: row for row in comparison["rows"] if row["slice"] == "gender"}
    assert gap["demographic_parity_difference"]["before"]["value"] > 0.1
    assert gap["demographic_parity_difference"]["after"]["value"] < gap["demographic_parity_difference"]["before"]["value"]
    assert summary["gate"]["baseline"]["passed"] is False



def test_sst2_train_file_reads_completely():
    path = shared_data("sst2", "train.tsv")
    result = run_cli(["data", "check", str(path), "--text-column", "sentence", "--no-issues", "--format", "json"],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 67349 and report["labels"] == {"1": 37569, "0": 29780}


def test_davidson_csv_with_multiline_tweets_reads_every_row():
    path = shared_data("davidson2017", "labeled_data.csv")
    result = run_cli(["data", "check", str(path), "--text-column", "tweet", "--label-column", "class",
                                   "--max-length", "128", "--no-issues", "--format", "json"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 24783 and report["labels"] == {"1": 19190, "2": 4163, "0": 1430}


def test_tweeteval_style_label_column_missing_exits_3(tmp_path):
    text = shared_data("tweeteval", "hate", "val_text.txt").read_text(encoding="utf-8").splitlines()[:20]
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in text), encoding="utf-8")
    result = run_cli(["train", "--data", str(path), "-o", str(tmp_path / "r")],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 3
    assert str(path) in result.stderr and "'label'" in result.stderr and "Traceback" not in result.stderr


def test_throughput_benchmark_smoke():
    shared_data("sst2", "train.tsv")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "finetune_throughput.py"), "--n", "32",
                             "--skip-group-by-length"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "finetune_throughput" and line["rounds"] == 3
    speedup = line["speedup_vs_trainer"]
    assert len(speedup["per_round"]) == 3 and speedup["min"] <= speedup["median"] <= speedup["max"]
    assert set(line["samples_per_s_median"]) == {"hf_trainer", "trustfm"}
