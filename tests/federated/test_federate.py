"""``trustfm federate`` in simulation, as a user runs it: privacy at both levels, the poisoning check, then the
run folder through audit --all, report and gate; and the refusals, one clear line each."""

import json
import os

import pytest
from conftest import run_cli

from trustfm.federated.privacy import client_level_epsilon


def _run(*args, ledger):
    return run_cli([str(a) for a in args], env={**os.environ, "TRUSTFM_PRIVACY_LEDGER": str(ledger)})


def test_simulation_with_both_dp_levels_poisoning_check_then_audit_report_gate(federation, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    config = federation(strategy="fedmedian", client_dp={"mode": "local", "noise_multiplier": 4.0,
                                                         "clipping_norm": 0.5})
    run_dir = tmp_path / "fed"
    done = _run("federate", config, "--set", 'privacy.dp={"epsilon": 8, "trainable": "head"}', "--poisoning-check",
                "fedavg,fedmedian", "--set", "federated.client_evaluation=final", "--format", "json", ledger=ledger)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["kind"] == "federated" and result["mode"] == "simulation" and result["rounds_completed"] == 2
    assert [r["clients"] for r in result["rounds"]] == [[0, 1, 2], [0, 1, 2]]
    assert len(result["client_records"]) == 3 and result["worst_client_accuracy"] is not None
    privacy = result["privacy"]
    assert privacy["guarantee"] == "client-level (local) and example-level"
    delta = privacy["client_delta"]
    assert delta == pytest.approx(0.01)  # a power of ten at most 1 / (10 x 3 clients)
    assert privacy["client_epsilon"] == pytest.approx(client_level_epsilon(noise_multiplier=4.0, sample_rate=1.0,
                                                                           rounds=2, delta=delta))
    # DP-SGD in each client plans for every round: what a client spent stays within the configured epsilon
    assert 0 < privacy["example_epsilon"] <= 8.0 + 1e-6
    assert privacy["ledger_epsilon"] == min(privacy["client_epsilon"], privacy["example_epsilon"])
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [e["status"] for e in entries] == ["settled"]
    assert entries[0]["epsilon"] == pytest.approx(privacy["ledger_epsilon"])

    check = json.loads((run_dir / "results" / "federated-poisoning.json").read_text())
    assert [r["rule"] for r in check["rules"]] == ["fedavg", "fedmedian"]
    assert check["attack"] == {"clients": 1, "attack": "scaled_update", "scale": 10.0}
    assert not any((run_dir / "poisoning" / arm / "model").exists() for arm in ("fedavg-clean", "fedmedian-poisoned"))

    # a normal run folder: every later command accepts it
    assert _run("audit", run_dir, "--all", ledger=ledger).returncode == 0
    assert _run("report", run_dir, ledger=ledger).returncode == 0
    html = (run_dir / "report.html").read_text()
    assert "Federated training — fedmedian, 3 clients" in html and "client-level (local) and example-level" in html
    assert "Poisoned clients under each aggregation rule" in html
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: federated\nrules:\n  - federated.rounds_completed >= 2\n"
                      "  - federated.worst_client_accuracy >= 0\n  - federated.privacy.client_epsilon <= 50\n")
    gate = _run("gate", run_dir, "--policy", policy, ledger=ledger)
    assert gate.returncode == 0, gate.stdout + gate.stderr

    # the dataset's budget is now partly spent: a second federation that would pass it is refused before round 1
    again = _run("federate", config, "-o", tmp_path / "again", "--set", "privacy.total_epsilon=1.0",
                 "--set", 'privacy.dp={"epsilon": 8, "trainable": "head"}', ledger=ledger)
    assert again.returncode != 0 and "privacy budget" in again.stderr and "Traceback" not in again.stderr
    assert not (tmp_path / "again" / "model").exists()


@pytest.mark.parametrize("flags,message", [
    (["--clients", "200"], "200 clients need at least 400 training rows"),
    (["--partition", "dirichlet", "--alpha", "0"], "federated.partition.alpha"),
    (["--strategy", "krum", "--clients", "3"], "krum needs at least"),
])
def test_bad_federations_get_one_clear_line(federation, tmp_path, flags, message):
    done = _run("federate", federation(), *flags, ledger=tmp_path / "ledger.jsonl")
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "fed" / "run.json").exists()


def test_an_unreachable_superlink_is_a_clear_error_not_a_hang(federation, tmp_path):
    from conftest import free_port

    done = _run("federate", federation(), "--superlink", f"127.0.0.1:{free_port()}", ledger=tmp_path / "l.jsonl")
    assert done.returncode != 0 and "cannot reach the Flower SuperLink" in done.stderr, done.stderr
    assert not (tmp_path / "fed").exists()
