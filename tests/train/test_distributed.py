"""Data-parallel training under real ``torchrun`` processes (gloo on CPU): the same numbers as one process, and
DP-SGD with its noise added once."""

import json
import os

import pytest
from conftest import run_cli, set_flags


def _epochs(run):
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["validation"] for line in lines if '"validation"' in line]


def test_two_processes_train_the_same_model_as_one(tiny_config, tmp_path):
    # no dropout: then the only difference is the order in which the processes' gradients are added up
    overrides = {**tiny_config, "train.epochs": 2, "model.dropout": 0.0, "train.early_stopping": None}
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    one = run_cli(["train", "--quiet", *set_flags({**overrides, "output_dir": str(tmp_path / "one")})], env=env,
                  isolated=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli(["train", "--quiet", "--nproc", "2", "--format", "json",
                   *set_flags({**overrides, "output_dir": str(tmp_path / "two")})], env=env, isolated=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout)["run_dir"] == str(tmp_path / "two")  # rank 0 alone reports
    for single, parallel in zip(_epochs(tmp_path / "one"), _epochs(tmp_path / "two"), strict=True):
        assert parallel["loss"] == pytest.approx(single["loss"], abs=1e-4)
        assert parallel["accuracy"] == single["accuracy"]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["status"] == "complete"
    assert not list(tmp_path.glob("trustfm-rank*"))  # the other rank's scratch folder is gone
    refused = run_cli(["train", "--resume", tmp_path / "two", "--nproc", "2"], env=env, isolated=True)
    assert refused.returncode != 0 and "without --nproc" in refused.stderr


def test_dp_sgd_with_two_processes_adds_noise_once_and_charges_the_ledger_once(tiny_config, tmp_path):
    from opacus.accountants.utils import get_noise_multiplier

    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "TMPDIR": str(tmp_path), "TRUSTFM_PRIVACY_LEDGER": str(ledger)}
    done = run_cli(["train", "--quiet", "--nproc", "2", "--dp-epsilon", "8",
                    *set_flags({**tiny_config, "train.epochs": 2})], env=env, isolated=True)
    assert done.returncode == 0, done.stderr[-3000:]
    privacy = json.loads((tmp_path / "run" / "results" / "privacy.json").read_text())
    # the accountant's view of the whole run: one process's sampling rate and steps, not one per process
    expected = get_noise_multiplier(target_epsilon=8, target_delta=privacy["delta"],
                                    sample_rate=privacy["sample_rate"], epochs=2, accountant="rdp")
    assert privacy["noise_multiplier"] == pytest.approx(expected)
    assert 7.0 < privacy["epsilon"] <= 8.0
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["status"] == "settled"
