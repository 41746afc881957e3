"""The privacy ledger: check-and-reserve is one locked step, kills keep reservations, abandon releases them."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from conftest import run_cli, set_flags, start_cli
from trustfm.errors import ConfigError
from trustfm.train.ledger import PrivacyLedger


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def dp_overrides(tiny_config, tmp_path):
    return {**tiny_config, "train.epochs": 1, "privacy.dp": {"epsilon": 4.0}, "privacy.total_epsilon": 5.0,
            "privacy.ledger": str(tmp_path / "ledger.jsonl")}


def test_reserve_is_idempotent_per_run_and_refuses_over_budget(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.jsonl")
    common = {"data_sha256": "ab" * 32, "dataset": "d.csv", "delta": 1e-5, "accountant": "rdp", "total_budget": 5.0}
    first = ledger.reserve(run_dir="/runs/a", epsilon=4.0, **common)
    assert ledger.reserve(run_dir="/runs/a", epsilon=4.0, **common) == first  # a resumed run keeps its entry
    with pytest.raises(ConfigError, match="spent or reserved epsilon 4 of its total 5"):
        ledger.reserve(run_dir="/runs/b", epsilon=4.0, **common)
    ledger.settle("/runs/a", 3.2)
    assert ledger.spent("ab" * 32) == pytest.approx(3.2)
    ledger.release("/runs/a", reason="test")
    assert ledger.spent("ab" * 32) == 0.0
    assert [e["status"] for e in _entries(tmp_path / "ledger.jsonl")] == ["released"]


def test_concurrent_dp_runs_on_one_dataset_cannot_overspend(dp_overrides, tmp_path):
    runs = [tmp_path / f"run{i}" for i in range(3)]
    procs = [start_cli(["train", "--quiet", *set_flags({**dp_overrides, "output_dir": str(r)})]) for r in runs]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2, 2], outcomes
    assert all("privacy budget" in " ".join(err.split()) for code, err in outcomes if code == 2)
    entries = _entries(Path(dp_overrides["privacy.ledger"]))
    assert [e["status"] for e in entries] == ["settled"]
    assert entries[0]["epsilon"] <= 5.0


def _start_and_kill_mid_training(overrides: dict, run: Path) -> None:
    proc = start_cli(["train", "--quiet", *set_flags({**overrides, "output_dir": str(run)})])
    log = run / "logs" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and '"kind": "step"' in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_dp_run_keeps_its_reservation_until_resumed_or_abandoned(dp_overrides, tmp_path):
    overrides = {**dp_overrides, "train.epochs": 30}
    ledger = Path(overrides["privacy.ledger"])
    _start_and_kill_mid_training(overrides, tmp_path / "killed")
    (entry,) = _entries(ledger)
    assert entry["status"] == "reserved" and entry["epsilon"] == 4.0
    # the reservation still counts: a second run that would fit only without it is refused
    refused = run_cli(["train", "--quiet", *set_flags({**dp_overrides, "output_dir": str(tmp_path / "other")})])
    assert refused.returncode == 2 and "privacy budget" in refused.stderr
    # resumed, the run settles its own reservation (it does not reserve again)
    resumed = run_cli(["train", "--resume", tmp_path / "killed", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    (entry,) = _entries(ledger)
    assert entry["status"] == "settled" and 0 < entry["epsilon"] <= 4.0 + 1e-6  # early stopping may spend less

    second = {**overrides, "privacy.total_epsilon": 100.0}
    _start_and_kill_mid_training(second, tmp_path / "abandoned")
    assert _entries(ledger)[-1]["status"] == "reserved"
    abandoned = run_cli(["ledger", "abandon", tmp_path / "abandoned"])  # the run's own privacy.ledger
    assert abandoned.returncode == 0, abandoned.stderr
    assert _entries(ledger)[-1]["status"] == "released"
    assert not (tmp_path / "abandoned" / "checkpoints").exists()
    shown = run_cli(["ledger", "show", "--ledger", ledger, "--format", "json"])
    assert [e["status"] for e in json.loads(shown.stdout)] == ["settled", "released"]
