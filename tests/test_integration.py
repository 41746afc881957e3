"""End to end with the real default model (all-MiniLM-L6-v2) and the real data in ../shared/data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, shared_data

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "trustfm.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_demo_on_the_default_model_prints_the_report_path(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(CLI + ["demo", "-o", str(out), "--epochs", "2", "--quiet"],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.name == "report.html"
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["results"]["performance"]["accuracy"]["value"] >= 0.85
    base = numbers["provenance"]["base_model"]
    assert base["name_or_path"] == "default" and "model.safetensors" in base["weights_sha256"]
    assert numbers["provenance"]["config"]["data"]["group_columns"] == ["group"]


def test_sst2_train_file_reads_completely():
    path = shared_data("sst2", "train.tsv")
    result = subprocess.run(CLI + ["data", "check", str(path), "--text-column", "sentence", "--no-issues", "--format", "json"],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 67349 and report["labels"] == {"1": 37569, "0": 29780}


def test_davidson_csv_with_multiline_tweets_reads_every_row():
    path = shared_data("davidson2017", "labeled_data.csv")
    result = subprocess.run(CLI + ["data", "check", str(path), "--text-column", "tweet", "--label-column", "class",
                                   "--max-length", "128", "--no-issues", "--format", "json"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 24783 and report["labels"] == {"1": 19190, "2": 4163, "0": 1430}


def test_tweeteval_style_label_column_missing_exits_3(tmp_path):
    text = shared_data("tweeteval", "hate", "val_text.txt").read_text(encoding="utf-8").splitlines()[:20]
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in text), encoding="utf-8")
    result = subprocess.run(CLI + ["train", "--data", str(path), "-o", str(tmp_path / "r")],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 3
    assert str(path) in result.stderr and "'label'" in result.stderr and "Traceback" not in result.stderr


def test_throughput_benchmark_smoke():
    shared_data("sst2", "train.tsv")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "finetune_throughput.py"), "--n", "96",
                             "--skip-group-by-length"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "finetune_throughput"
    assert line["ratio"] == pytest.approx(line["trustfm_samples_per_s"] / line["hf_trainer_samples_per_s"], rel=0.02)
