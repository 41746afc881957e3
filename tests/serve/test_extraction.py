"""The extraction audit attacks the real service over HTTP; the defences it measures change what it gets."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import Server, make_rows, run_cli, write_csv
from trustfm.errors import ConfigError
from trustfm.serve.extraction import ExtractionResult, audit_extraction_run


@pytest.fixture(scope="module")
def attacked(parent_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("extraction") / "run"
    shutil.copytree(parent_run, run)
    public = write_csv(tmp_path_factory.mktemp("public") / "public.csv", make_rows(120, seed=7))
    result = audit_extraction_run(run, attacker_texts=public, budgets=(20, 60), key_query_budget=20, alert_texts=50,
                                  eval_rows=200, defences=("full", "top1", "budget"))
    return run, public, result


def test_each_defence_and_budget_is_measured_through_the_api(attacked):
    run, _, result = attacked
    assert [(p.defence, p.budget) for p in result.points] == [
        (d, b) for d in ("full", "top1", "budget") for b in (20, 60)]
    answered = {(p.defence, p.budget): p.answered for p in result.points}
    assert answered[("full", 60)] == 60 and answered[("top1", 60)] == 60
    assert answered[("budget", 60)] == 20  # the per-key query budget refused the rest
    # the alert fires for the unbounded attacker (60 distinct texts over the 50 threshold), not the capped one
    assert result.alerts == {"full": True, "top1": True, "budget": False}
    for p in result.points:
        assert 0.0 <= p.agreement.low <= p.agreement.value <= p.agreement.high <= 1.0
    saved = json.loads((run / "results" / "extraction.json").read_text())
    assert ExtractionResult.model_validate(saved).metrics()["full.60.agreement"] == result.points[1].agreement.value


def test_the_report_renders_it_and_bad_requests_are_clear(attacked):
    run, public, _ = attacked
    assert run_cli(["report", str(run)]).returncode == 0
    assert "Security — model extraction through the API" in (run / "report.html").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="largest budget needs"):
        audit_extraction_run(run, attacker_texts=public, budgets=(20, 500))
    bad = run_cli(["audit", "extraction", str(run), "--attacker-texts", str(public), "--defences", "magic"])
    assert bad.returncode == 2 and "unknown defences" in bad.stderr


def test_a_model_behind_an_endpoint_is_attacked_as_it_is_served(parent_run, tmp_path, monkeypatch):
    """A run imported from another trustfm service that discloses the top label only and caps each key at 110
    texts: the attack goes to that endpoint with its token; the refusals and what top-1 answers teach are measured,
    the alert is not observable, and trustfm's own defences cannot be switched on a foreign endpoint."""
    served = tmp_path / "served"
    shutil.copytree(parent_run, served)
    assert run_cli(["report", served]).returncode == 0
    key = run_cli(["serve", "keys", "create", served, "--name", "auditor"]).stdout.strip()
    settings = tmp_path / "serve.yaml"
    settings.write_text("disclosure: top1\nkey_query_budget: 110\n")
    test = write_csv(tmp_path / "test.csv", make_rows(40, seed=3))
    public = write_csv(tmp_path / "public.csv", make_rows(60, seed=11))
    monkeypatch.setenv("ENDPOINT_TOKEN", key)
    server = Server(served, "--config", settings)
    try:
        run = tmp_path / "imported"
        done = run_cli(["import", "--endpoint", server.url, "--auth-env", "ENDPOINT_TOKEN", "-o", run,
                        "--test-data", test, "--quiet"])
        assert done.returncode == 0, done.stderr
        with pytest.raises(ConfigError, match="attacked as it is served"):
            audit_extraction_run(run, attacker_texts=public, budgets=(20,), defences=("top1",))
        audited = run_cli(["audit", "extraction", run, "--attacker-texts", public, "--budgets", "20,60",
                           "--format", "json"])
        assert audited.returncode == 0, audited.stderr
    finally:
        server.stop()
    result = ExtractionResult.model_validate_json(audited.stdout)
    # the budget of 110 texts: 40 for the import's evaluation, 40 for the audit's own predictions of the same rows
    # (a new process, a new cache), then 30 of the attacker's, sent 10 at a time; the rest are refused (429)
    assert [(p.defence, p.budget, p.answered) for p in result.points] == [("as-served", 20, 20),
                                                                          ("as-served", 60, 30)]
    assert result.alerts == {"as-served": None} and result.key_query_budget is None
    assert result.requests >= 3 and server.url in result.target
    assert 0.5 <= result.points[1].agreement.value <= 1.0
    assert "as-served.alert" not in result.metrics()
    assert key not in audited.stdout + (run / "results" / "extraction.json").read_text()
    assert run_cli(["report", run]).returncode == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "attacked as it is served" in page and "not observable" in page
    with pytest.raises(ConfigError, match="is for a run imported from an endpoint"):
        audit_extraction_run(parent_run, attacker_texts=public, budgets=(20,), defences=("as-served",))
