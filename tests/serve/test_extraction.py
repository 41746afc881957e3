"""The extraction audit attacks the real service over HTTP; the defences it measures change what it gets."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import make_rows, run_cli, write_csv
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
