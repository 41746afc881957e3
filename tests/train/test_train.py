import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_rows, write_csv
from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate
from trustfm.runs import read_json
from trustfm.train import Callback, FineTuner


def _strip_times(records):
    return [{k: v for k, v in r.items() if "seconds" not in k and "per_second" not in k} for r in records]


def _log(run: Path):
    return [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]


def test_same_config_and_seed_give_the_same_metrics(tiny_config, tmp_path):
    # the thread count is pinned: another count sums in another order (recorded as run.json training.threads)
    pinned = {**tiny_config, "train.num_threads": 2}
    first = train_and_evaluate(load_config(None, {**pinned, "output_dir": str(tmp_path / "a")}), show_progress=False)
    second = train_and_evaluate(load_config(None, {**pinned, "output_dir": str(tmp_path / "b")}), show_progress=False)
    a, b = read_json(first.result("performance")), read_json(second.result("performance"))
    assert a == b
    assert _strip_times(_log(first.root)) == _strip_times(_log(second.root))
    info = read_json(first.run_info)
    assert info["status"] == "complete"
    assert info["training"]["epochs_completed"] == 3
    assert info["training"]["threads"] == 2
    assert a["accuracy"]["value"] > 0.9  # the synthetic task is separable


def test_rerun_into_an_existing_run_folder_is_refused(tiny_config):
    from trustfm.errors import ConfigError

    config = load_config(None, {**tiny_config, "train.epochs": 1})
    train_and_evaluate(config, show_progress=False)
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train_and_evaluate(config, show_progress=False)


def test_a_user_error_before_training_leaves_no_run_behind(tiny_config, tmp_path):
    from trustfm.errors import ConfigError, DataError

    wrong = {**tiny_config, "train.epochs": 1, "model.label_descriptions": {"neg": "bad", "happy": "good"}}
    with pytest.raises(ConfigError, match="missing \\['pos'\\]"):
        train_and_evaluate(load_config(None, wrong), show_progress=False)
    assert not Path(tiny_config["output_dir"]).exists()  # this run made the folder: all of it goes
    # the corrected config runs at once, without deleting anything by hand
    fixed = {**wrong, "model.label_descriptions": {"neg": "bad", "pos": "good"}}
    assert read_json(train_and_evaluate(load_config(None, fixed), show_progress=False).run_info)["status"] == "complete"
    # a folder that was there before keeps what the user had in it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rows = make_rows(40)
    rows[7]["label"] = ""
    bad = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match="row 8"):
        train_and_evaluate(load_config(None, {**tiny_config, "data.train": str(bad), "output_dir": str(mine)}),
                  show_progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_callback_hooks_run_in_order_and_sample_weights_apply(tiny_config):
    from trustfm.data.batching import encode_texts
    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier

    calls = []

    class Recorder(Callback):
        def on_fit_start(self, trainer):
            calls.append("fit_start")

        def on_batch(self, trainer, batch):
            calls.append("batch")
            batch["weight"] = torch.zeros(len(batch["labels"]))
            batch["weight"][0] = 1.0
            return batch

        def on_after_backward(self, trainer, batch):
            calls.append("after_backward")
            assert any(p.grad is not None for p in trainer.model.parameters())

        def on_epoch_end(self, trainer, record):
            calls.append("epoch_end")

    config = load_config(None, {**tiny_config, "train.epochs": 1})
    model, tokenizer = build_classifier(ModelConfig(name_or_path=tiny_config["model.name_or_path"]), ["neg", "pos"])
    texts = [r["text"] for r in make_rows(64)]
    labels = np.array([0 if r["label"] == "neg" else 1 for r in make_rows(64)])
    encoded = encode_texts(tokenizer, texts, 32)
    FineTuner(config.train, seed=0, callbacks=[Recorder()], show_progress=False).fit(
        model, encoded, labels, encoded, labels, pad_id=0, checkpoint_dir=Path(tiny_config["output_dir"]) / "ck",
        validation_metrics=lambda y, p: {"macro_f1": 0.0}, save_best=lambda m: None,
    )
    assert calls[0] == "fit_start" and calls[-1] == "epoch_end"
    assert calls.count("batch") == 4 and calls.count("after_backward") == 4


def test_early_stopping_stops_and_keeps_the_best_epoch(tiny_config):
    overrides = {**tiny_config, "train.epochs": 6, "train.learning_rate": 1e-9,
                 "train.early_stopping.patience": 1, "train.early_stopping.metric": "loss",
                 "train.early_stopping.mode": "min"}
    paths = train_and_evaluate(load_config(None, overrides), show_progress=False)
    training = read_json(paths.run_info)["training"]
    # with a vanishing learning rate validation loss stops improving almost at once
    assert training["stopped_early"] and training["epochs_completed"] < 6
    assert training["best_epoch"] <= training["epochs_completed"]


def test_resume_after_sigkill_finishes_with_the_same_metrics(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "train.csv", make_rows(1500, seed=2))
    common = [
        "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "3", "--batch-size", "8",
        "--max-length", "32", "--learning-rate", "1e-3", "--set", "evaluate.bootstrap_samples=100", "--quiet",
    ]
    # the killed run chooses its threads from the idle cores; the straight run is pinned to that choice below
    cli = [sys.executable, "-m", "trustfm.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli + ["train", *common, "-o", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # let epoch 2 get under way
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert not (killed / "results" / "performance.json").exists()
    assert read_json(killed / "run.json")["status"] == "running"

    resumed = subprocess.run(cli + ["train", "--resume", str(killed), "--quiet"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    threads = read_json(killed / "run.json")["training"]["threads"]  # kept from the checkpoint, not chosen again
    straight = tmp_path / "straight"
    subprocess.run(cli + ["train", *common, "--set", f"train.num_threads={threads}", "-o", str(straight)],
                   check=True, env=env, capture_output=True)
    assert read_json(killed / "results" / "performance.json") == read_json(straight / "results" / "performance.json")
    assert _strip_times(_log(killed)) == _strip_times(_log(straight))
    assert read_json(killed / "run.json")["model_sha256"] == read_json(straight / "run.json")["model_sha256"]


def test_tensorboard_logging_writes_event_files(tiny_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(None, {**tiny_config, "train.epochs": 1, "train.tracking.tensorboard": True})
    paths = train_and_evaluate(config, show_progress=False)
    events = EventAccumulator(str(paths.root / "logs" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "train/loss" in scalars and "validation/accuracy" in scalars
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == read_json(paths.run_info)["training"]["steps"]


def test_row_counts_add_up_per_split_and_every_policy_applies_to_every_split(tiny_config, tmp_path):
    rows = make_rows(200, seed=4)
    rows[3]["text"] = ""  # dropped by empty_text: drop
    rows[8]["text"] = " ".join(["word"] * 80)  # longer than max_length 32: dropped by too_long: drop
    test_rows = make_rows(40, seed=6)
    test_rows[5]["text"] = " ".join(["long"] * 80)  # the same policy applies to the test file
    train, test = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", test_rows)
    config = {**tiny_config, "data.train": str(train), "data.test": str(test), "train.epochs": 1,
              "data.on_problem": {"empty_text": "drop", "too_long": "drop"}}
    paths = train_and_evaluate(load_config(None, config), show_progress=False)
    record = json.loads(paths.run_info.read_text())
    rows_ = record["rows"]
    assert rows_["read"] == 240 and rows_["rejected"] == 3
    assert rows_["read"] - rows_["rejected"] == rows_["train"] + rows_["validation"] + rows_["test"]
    assert rows_["test"] == 39
    rejected = [json.loads(line) for line in paths.rejected.read_text().splitlines()]
    assert sorted((Path(r["file"]).name, r["row"], r["kind"]) for r in rejected) == [
        ("test.csv", 6, "too_long"), ("train.csv", 4, "empty_text"), ("train.csv", 9, "too_long")]
    assert set(record["truncated"]) == {"train", "validation", "test"}
    # the audits judge the same test rows training kept
    evaluated = json.loads(paths.result("performance").read_text())
    assert evaluated["n"] == 39


def test_a_complete_run_keeps_its_model_not_its_training_checkpoint(tiny_config):
    from pathlib import Path

    from conftest import TEST_HOME, run_cli, set_flags

    run = Path(tiny_config["output_dir"])
    assert run_cli(["train", "--quiet", *set_flags({**tiny_config, "train.epochs": 1})]).returncode == 0
    assert (run / "model" / "model.safetensors").is_file() and not (run / "checkpoints").exists()
    kept = run.with_name("kept")
    assert run_cli(["train", "--quiet", *set_flags({**tiny_config, "train.epochs": 1, "output_dir": str(kept),
                                                     "train.keep_checkpoints": True})]).returncode == 0
    assert (kept / "checkpoints" / "last.pt").is_file()
    assert str(Path.home()) == TEST_HOME  # the suite writes nothing under the real home
