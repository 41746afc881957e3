"""Canary clients audit client-level DP in one federated run: a correct private mean keeps its claim, one whose
noise was cut is caught, and the draws stay sealed until the audit."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from trustfm.config import load_config
from trustfm.errors import ConfigError

CLIENT_DP = {"mode": "server", "noise_multiplier": 2.5, "clipping_norm": 0.5, "delta": 1e-6}  # 1 round: epsilon 1.90


def _federate(federation, tmp_path, name, monkeypatch):
    from trustfm.federated.run import federate_run

    monkeypatch.setenv("TRUSTFM_CANARY_KEY_FILE", str(tmp_path / "canary-key"))
    monkeypatch.setenv("TRUSTFM_PRIVACY_LEDGER", str(tmp_path / f"{name}-ledger.jsonl"))
    config = load_config(federation(name=name, client_dp=CLIENT_DP, rounds=1), {"privacy.audit.canaries": 300})
    return federate_run(config, show_progress=False).root


def _audit(run):
    done = run_cli(["audit", "privacy-canaries", run, "--format", "json"])
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip().startswith("{") else None


def test_a_correct_private_mean_keeps_its_claim_and_a_cut_noise_is_caught(federation, tmp_path, monkeypatch):
    from trustfm.federated import privacy

    run = _federate(federation, tmp_path, "fed", monkeypatch)
    public = json.loads((run / "canaries" / "canaries.json").read_text())
    assert public["kinds"] == ["client"] and len(public["gradient"]) == 300 and public["gradient_norm"] == 0.5
    # nothing in the run folder but the sealed file holds the draws; rounds record no canary
    federated = json.loads((run / "results" / "federated.json").read_text())
    assert all(r["clients"] == [0, 1, 2] for r in federated["rounds"])
    assert json.loads((run / "run.json").read_text())["privacy_audit"]["inclusion"].startswith("sealed")
    code, result = _audit(run)
    assert code == 0 and result["claim"] == "stands"
    accounted = federated["privacy"]["client_epsilon"]
    assert result["accounted_epsilon"] == pytest.approx(accounted) and accounted == pytest.approx(1.90, abs=0.01)
    assert result["delta"] == 1e-6 and result["delta_source"] == "the run's client-level delta"
    (only,) = result["audits"]
    assert only["canary_kind"] == "client" and only["epsilon_lower_bound"] < accounted

    # the product has no switch for this: the server's noise cut twentyfold, the accountant still says 1.90
    original = privacy.add_gaussian_noise
    monkeypatch.setattr(privacy, "add_gaussian_noise", lambda update, std: original(update, std / 20))
    broken = _federate(federation, tmp_path, "broken", monkeypatch)
    monkeypatch.undo()
    code, result = _audit(broken)
    assert code == 4 and result["claim"] == "refuted"
    assert result["audits"][0]["auc"] > 0.9 and result["epsilon_lower_bound"] > accounted


@pytest.mark.parametrize("federated,more,words", [
    ({"clients": 3}, {}, "without federated.client_dp mode server"),
    ({"clients": 3, "client_dp": {**CLIENT_DP, "mode": "local"}}, {}, "without federated.client_dp mode server"),
    ({"clients": 3, "client_dp": CLIENT_DP}, {"privacy.audit.kinds": ["input"]}, "input or gradient canaries in a "
                                                                                  "federated run"),
    (None, {"privacy.audit.kinds": ["client"]}, "client canaries outside a federated run"),
])
def test_canary_clients_are_refused_where_they_cannot_work(federated, more, words):
    overrides = {"data.train": "x.csv", "privacy.audit.canaries": 100, **more}
    if federated is not None:
        overrides["federated"] = federated
    with pytest.raises(ConfigError, match=words):
        load_config(None, overrides)
