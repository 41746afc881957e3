"""``trustfm tune`` as a user runs it: search under constraints, select, then audit, report and gate the output run;
pruning; kill and resume; two processes on one study; a DP search charged as a whole, whose canary audit can fail;
the refusals."""

import json
import os
import signal
import time

import pytest
import yaml
from conftest import run_cli, start_cli


def _tune(*args, ledger=None):
    env = {**os.environ, **({"TRUSTFM_PRIVACY_LEDGER": str(ledger)} if ledger else {})}
    return run_cli(["tune", *[str(a) for a in args]], env=env)


def _trial_config(study, number):
    return yaml.safe_load((study / "trials" / f"{number:04d}" / "config.yaml").read_text())


def test_search_under_a_fairness_constraint_then_select_audit_report_gate(tune_config, tmp_path):
    config = tune_config(constraints=["fairness.max_fpr_gap <= 0.4"],
                         objectives=[{"metric": "validation.macro_f1"}])
    done = _tune(config, "--select", "max validation.macro_f1 where latency.p95_ms <= 2000", "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["kind"] == "tune" and result["sampler"] == "tpe" and len(result["trials"]) == 4
    study = tmp_path / "study"
    assert result["journal"] == str(study / "study.journal") and (study / "tune.json").is_file()
    for trial in result["trials"]:
        assert trial["state"] in ("complete", "pruned")
        # each trial is a normal run folder trained with its own settings
        saved = _trial_config(study, trial["number"])
        assert saved["train"]["learning_rate"] == pytest.approx(trial["params"]["train.learning_rate"])
        assert saved["train"]["batch_size"] == trial["params"]["train.batch_size"] and saved["tune"] is None
        run = json.loads((study / "trials" / f"{trial['number']:04d}" / "run.json").read_text())
        assert run["status"] == "complete" and run["tuning"]["trial"] == trial["number"]
        if trial["state"] == "complete":
            gap = trial["metrics"]["fairness.max_fpr_gap"]
            # Optuna was told the constraint: feasible exactly when it holds
            assert trial["feasible"] == (gap <= 0.4)
            assert trial["constraints"]["fairness.max_fpr_gap <= 0.4"] == pytest.approx(gap - 0.4)
            assert gap == max(v for k, v in trial["metrics"].items()
                              if k.startswith("fairness.") and k.endswith(".fpr_gap"))
            assert trial["metrics"]["latency.p95_ms"] >= trial["metrics"]["latency.p50_ms"] > 0
    chosen = result["chosen"]
    feasible = [t for t in result["trials"] if t["state"] == "complete" and t["feasible"]
                and t["metrics"]["latency.p95_ms"] <= 2000]
    assert chosen["trial"] in {t["number"] for t in feasible}
    assert chosen["metrics"]["validation.macro_f1"] == max(t["metrics"]["validation.macro_f1"] for t in feasible)
    selected = study / "selected"
    assert chosen["run_dir"] == str(selected)
    lineage = json.loads((selected / "run.json").read_text())["tuning"]
    assert lineage["study"] == str(study) and lineage["trial"] == chosen["trial"] and lineage["rule"].startswith("max")
    trial_run = json.loads((study / "trials" / f"{chosen['trial']:04d}" / "run.json").read_text())
    assert json.loads((selected / "run.json").read_text())["model_sha256"] == trial_run["model_sha256"]
    # the output run is evaluated on the test split; the trials' validation-split audits stay behind
    assert sorted(p.name for p in (selected / "results").iterdir()) == ["performance.json", "tune.json"]
    assert (selected / "monitoring" / "reference.json").is_file()
    assert run_cli(["audit", "fairness", selected]).returncode == 0
    report = run_cli(["report", selected])
    assert report.returncode == 0, report.stderr[-2000:]
    html = (selected / "report.html").read_text()
    assert "Hyper-parameter search" in html and "trial, in the order it ended" in html
    assert "fairness.max_fpr_gap &lt;= 0.4" in html and "importance for validation.macro_f1" in html
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - tune.chosen.validation.macro_f1 >= 0.5\n  - fairness.max_fpr_gap <= 1.0\n")
    gate = run_cli(["gate", selected, "--policy", policy, "--format", "json"])
    assert gate.returncode == 0 and json.loads(gate.stdout)["passed"] is True


def test_median_pruner_stops_trials_that_trail_after_an_epoch(tune_config, tmp_path):
    # a learning rate of 1e-7 leaves the model where it started; after two good trials, those stop after epoch 1
    config = tune_config(space={"train.learning_rate": {"choice": [3e-3, 1e-7]},
                                "train.weight_decay": {"choice": [0.0, 0.01]}},
                         sampler="grid", pruner="median", startup_trials=1, trials=10,
                         config={"train": {"batch_size": 16, "epochs": 3, "learning_rate": 3e-3}})
    done = _tune(config, "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert len(result["trials"]) == 4  # the grid's size, not the 10 asked for
    pruned = [t for t in result["trials"] if t["state"] == "pruned"]
    assert pruned and all(t["params"]["train.learning_rate"] == 1e-7 for t in pruned)
    for t in pruned:
        assert t["pruned_at_epoch"] == len(t["intermediate"]) < 3
        run = json.loads((tmp_path / "study" / "trials" / f"{t['number']:04d}" / "run.json").read_text())
        assert run["training"]["epochs_completed"] == t["pruned_at_epoch"] and run["tuning"]["pruned_at_epoch"]
    assert result["counts"]["pruned"] == len(pruned) and result["pruner"] == "median"


def _wait_for(predicate, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_kill_then_resume_retries_the_killed_trial(tune_config, tmp_path):
    config = tune_config(pruner="none", sampler="random")
    study = tmp_path / "study"
    process = start_cli(["tune", config, "-q"], start_new_session=True)
    try:
        assert _wait_for(lambda: (study / "trials" / "0001" / "run.json").exists()), "trial 1 never started"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    params = _trial_config(study, 1)["train"]
    again = _tune(config, "--resume", "--format", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert len(result["trials"]) == 4 and result["counts"]["complete"] == 4
    assert 1 not in [t["number"] for t in result["trials"]]  # the killed trial is not counted...
    retried = [t for t in result["trials"] if t["number"] > 1 and t["params"]["train.learning_rate"] ==
               pytest.approx(params["learning_rate"]) and t["params"]["train.batch_size"] == params["batch_size"]]
    assert len(retried) == 1  # ...its settings were tried again
    # the book-keeping says what happened: one failure (killed), its run folder abandoned, every trial's time
    assert result["counts"]["interrupted"] == 1 and result["counts"]["fail"] == 1
    assert json.loads((study / "trials" / "0001" / "run.json").read_text())["status"] == "abandoned"
    assert result["trial_seconds"] == pytest.approx(sum(t["seconds"] for t in result["trials"]), abs=0.05)
    refused = _tune(config)
    assert refused.returncode != 0 and "already holds a study" in refused.stderr and "--resume" in refused.stderr


def test_two_processes_share_one_study(tune_config, tmp_path):
    config = tune_config(pruner="none", sampler="random", trials=1)
    assert _tune(config, "-q").returncode == 0  # the study exists; two processes then fill it to 8 trials
    processes = [start_cli(["tune", config, "--resume", "--trials", "8", "--format", "json"]) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    # each process printed the study as it stood when it finished; asked again, the study is complete
    again = _tune(config, "--resume", "--trials", "8", "--format", "json")
    trials = json.loads(again.stdout)["trials"]
    numbers = [t["number"] for t in trials]
    assert len(numbers) == 8 == len(set(numbers)) and all(t["state"] == "complete" for t in trials)
    assert len({t["worker"] for t in trials[1:]}) == 2  # both processes ran trials
    assert all((tmp_path / "study" / "trials" / f"{n:04d}" / "model").is_dir() for n in numbers)


def test_dp_search_is_charged_as_a_whole_audited_with_shared_canaries_and_refused_over_budget(tune_config, tmp_path):
    from trustfm.config import load_config
    from trustfm.tune.study import StudyPlan

    ledger = tmp_path / "ledger.jsonl"
    private = {"privacy": {"dp": {"epsilon": 4.0, "trainable": "head"}, "total_epsilon": 9.0,
                           "audit": {"canaries": 100}}}
    config = tune_config(sampler="random", pruner="none", trials=2, config=private)
    plan = StudyPlan(load_config(config))
    assert 9.0 / 2 < plan.privacy.epsilon < 9.0  # the budget holds one search, not two
    done = _tune(config, "--select", "best", "--format", "json", ledger=ledger)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["privacy"]["epsilon"] == pytest.approx(plan.privacy.epsilon)
    assert plan.privacy.epsilon > plan.privacy.trial_epsilon
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    # one entry for the whole search; the trials' own DP-SGD spend is recorded in the study, not charged again
    assert [(e["status"], e["run_dir"]) for e in entries] == [("settled", str(tmp_path / "study"))]
    assert entries[0]["epsilon"] == pytest.approx(plan.privacy.epsilon)
    trial_entries = (tmp_path / "study" / "trials-ledger.jsonl").read_text().splitlines()
    assert len(trial_entries) == len(result["trials"]) >= 1
    released = json.loads((tmp_path / "study" / "selected" / "results" / "tune.json").read_text())
    assert released["trials"] == [] and released["chosen"]["trial"] is None and released["privacy"]["epsilon"] > 0
    # every trial trained on the study's canaries with the same sealed draws; the released run's audit is set
    # beside the whole search's epsilon, not the chosen trial's
    sealed = (tmp_path / "study" / "canaries" / "inclusion.sealed").read_bytes()
    assert all((t / "canaries" / "inclusion.sealed").read_bytes() == sealed
               for t in (tmp_path / "study" / "trials").iterdir() if t.is_dir())
    audited = run_cli(["audit", "privacy-canaries", tmp_path / "study" / "selected", "--format", "json"])
    assert audited.returncode == 0, audited.stderr
    canary_audit = json.loads(audited.stdout)
    assert canary_audit["accounted_epsilon"] == pytest.approx(plan.privacy.epsilon) and canary_audit["claim"] == "stands"
    assert canary_audit["accounted_by"].startswith("the whole DP search")
    assert {a["canary_kind"] for a in canary_audit["audits"]} == {"input", "gradient"}
    report = run_cli(["report", tmp_path / "study" / "selected"])
    page = (tmp_path / "study" / "selected" / "report.html").read_text()
    assert report.returncode == 0 and "Privacy of the search" in page
    assert "The accounted epsilon is that of the whole DP search" in page
    # a second search on the same data would pass the budget: refused before any trial, with its cost
    again = tune_config(name="again", sampler="random", pruner="none", trials=2, config=private)
    refused = _tune(again, ledger=ledger)
    assert refused.returncode != 0 and not (tmp_path / "again").exists()
    assert "the search would cost epsilon" in refused.stderr and "privacy budget" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_dp_search_whose_noise_was_cut_is_caught_by_the_released_runs_canary_audit(tune_config, tmp_path,
                                                                                      monkeypatch):
    from trustfm.config import load_config
    from trustfm.pipeline import tune_and_select
    from trustfm.train import dp_noise

    private = {"privacy": {"dp": {"epsilon": 2.0, "delta": 1e-6, "trainable": "all"}, "ledger": str(tmp_path / "l"),
                           "audit": {"canaries": 1000}},
               "train": {"batch_size": 16, "learning_rate": 3e-3, "epochs": 2, "num_threads": 1}}
    config = load_config(tune_config(sampler="random", pruner="none", trials=2, config=private,
                                     space={"train.learning_rate": {"choice": [2e-3, 3e-3]}}))
    # the product has no switch for this: every trial's noise is cut twentyfold, the accountant does not know
    original = dp_noise.SecretRandomness.gaussian_
    monkeypatch.setattr(dp_noise.SecretRandomness, "gaussian_", lambda self, out, std: original(self, out, std / 20))
    result = tune_and_select(config, select="best", show_progress=False)
    monkeypatch.undo()
    audited = run_cli(["audit", "privacy-canaries", tmp_path / "study" / "selected", "--format", "json"])
    assert audited.returncode == 4, audited.stderr
    canary_audit = json.loads(audited.stdout)
    assert canary_audit["accounted_epsilon"] == pytest.approx(result.privacy["epsilon"])
    assert canary_audit["accounted_by"].startswith("the whole DP search")
    assert canary_audit["claim"] == "refuted" and canary_audit["epsilon_lower_bound"] > result.privacy["epsilon"]


@pytest.mark.parametrize("tune, message", [
    ({"space": {"train.learning_rat": {"log_uniform": [1e-4, 1e-2]}}}, "did you mean train.learning_rate"),
    ({"space": {"train.batch_size": {"choice": []}}}, "tune.space.train.batch_size: choice needs a non-empty list"),
    ({"constraints": ["nosuch.metric <= 1"]}, "'nosuch.metric': no trial metric or audit is named 'nosuch'"),
    ({"constraints": ["fairness.max_fpr_gapp <= 0.1"]}, "did not produce: 'fairness.max_fpr_gapp' (did you mean "
                                                        "fairness.max_fpr_gap"),
    ({"sampler": "tpe", "select": "fastest"}, "write 'best'"),
])
def test_bad_input_is_one_clear_line(tune_config, tune, message):
    done = _tune(tune_config(**tune))
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_two_objectives_give_a_pareto_front_and_hyperband_prunes_one(tune_config, tmp_path):
    config = tune_config(sampler="nsga2", trials=4, objectives=[
        {"metric": "validation.macro_f1"}, {"metric": "robustness.worst_flip_rate", "direction": "minimize"}],
        audits={"robustness": {"max_texts": 30}})
    done = _tune(config, "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["pruner"].startswith("median (trustfm's median rule on validation macro_f1)")
    complete = [t for t in result["trials"] if t["state"] == "complete"]
    front = [t for t in complete if t["number"] in result["front"]]
    assert front
    for t in complete:  # the front: no complete trial is at least as good on both and better on one
        values = t["values"]
        dominated = any(o["values"][0] >= values[0] and o["values"][1] <= values[1] and o["values"] != values
                        for o in complete)
        assert (t["number"] in result["front"]) == (not dominated)
        assert values == [t["metrics"]["validation.macro_f1"], t["metrics"]["robustness.worst_flip_rate"]]
    hyperband = tune_config(name="hyperband", pruner="hyperband", trials=3)
    done = _tune(hyperband, "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["pruner"] == "hyperband"
    several = tune_config(name="refused", pruner="hyperband", objectives=[
        {"metric": "validation.macro_f1"}, {"metric": "latency.p95_ms", "direction": "minimize"}])
    refused = _tune(several)
    assert refused.returncode != 0 and "hyperband judges one objective" in refused.stderr


def test_a_near_constant_trial_does_not_meet_a_flip_rate_constraint_and_guards_hold_every_constraint():
    from trustfm.tune.objectives import judge_constraint, parse_constraints
    from trustfm.tune.result import TrialRecord, TuneResult
    from trustfm.tune.select import choose_trial
    from trustfm.tune.objectives import parse_selection

    collapsed = {"validation.macro_f1": 0.348, "validation.majority_share": 0.99, "robustness.worst_flip_rate": 0.0}
    working = {"validation.macro_f1": 0.81, "validation.majority_share": 0.55, "robustness.worst_flip_rate": 0.04}
    [flip] = parse_constraints(["robustness.worst_flip_rate <= 0.05"])
    violation, why = judge_constraint(flip, collapsed)
    assert violation > 0 and "near-constant (99.0% of validation predictions are one class)" in why
    assert judge_constraint(flip, working) == (pytest.approx(-0.01), None)
    [guarded] = parse_constraints(["robustness.worst_flip_rate <= 0.05"], min_quality="validation.macro_f1 >= 0.9")
    violation, why = judge_constraint(guarded, working)
    assert violation > 0 and "guard validation.macro_f1 >= 0.9 fails" in why
    [own] = parse_constraints([{"metric": "robustness.worst_flip_rate", "op": "<=", "value": 0.05,
                                "guard": "validation.macro_f1 >= 0.6"}], min_quality="validation.macro_f1 >= 0.9")
    assert judge_constraint(own, working)[0] <= 0  # a constraint's own guard wins over the study's
    result = TuneResult(study_name="s", study_dir="d", journal="j", sampler="tpe", pruner="none", space={},
                        objectives=[{"metric": "validation.macro_f1", "direction": "maximize"}],
                        constraints=[flip.text()], trials_planned=2,
                        trials=[TrialRecord(number=0, state="complete", params={}, metrics=collapsed),
                                TrialRecord(number=1, state="complete", params={}, metrics=working)])
    assert choose_trial(result, parse_selection("min robustness.worst_flip_rate"), [flip]).number == 1
