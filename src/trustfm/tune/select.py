"""``--select``: pick one trial of a finished study by a rule and make it the study's output run.

The output run (``OUTPUT_DIR/selected``) is a copy of the trial's run folder
(config, ``run.json``, model, training log) whose ``run.json`` gains a
``tuning`` block (study, journal, trial, rule) and whose ``results/tune.json``
holds the study, the chosen trial marked. The trial's own audit results, made
on the validation split, are left behind: the output run is audited afresh on
the test split like any other run. In a DP search the released ``tune.json``
keeps only the privacy accounting and the chosen trial: the guarantee covers
the chosen output, not the table of every trial.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trustfm.errors import ConfigError
from trustfm.tune.objectives import Objective, Selection, guard_names, judge_constraint
from trustfm.tune.result import ChosenTrial, TrialRecord, TuneResult

SELECTED = "selected"
# what a trial folder holds that the output run does not copy: its resumable state, its lock, its validation audits
_LEFT_BEHIND = ("checkpoints", ".train.lock", "results", "report.html", "report.json")
_KEPT_RESULTS = ("privacy.json", "pii.json")  # written by training, not by an audit


def choose_trial(result: TuneResult, selection: Selection, constraints) -> TrialRecord:
    """The trial ``selection`` picks among complete trials that meet every study constraint and every rule of the
    selection. A rule over a metric no trial has is an error naming the closest ones; no feasible trial is an error
    naming the nearest miss."""
    from trustfm.rules import unknown_metrics_message

    complete = [t for t in result.trials if t.state == "complete"]
    if not complete:
        raise ConfigError(f"the study in {result.study_dir} has no complete trial to select from")
    objective = selection.objective or Objective(**result.objectives[0])
    rules = [*constraints, *selection.rules]
    unknown = unknown_metrics_message([objective.metric, *(r.name() for r in rules), *guard_names(rules)],
                                      complete[0].metrics)
    if unknown:
        raise ConfigError(f"--select '{selection.text}' reads metrics the trials do not have: {unknown}")
    def violation(t: TrialRecord, rule) -> float:
        return judge_constraint(rule, t.metrics)[0]

    feasible = [t for t in complete if all(violation(t, r) <= 0 for r in rules)]
    if not feasible:
        def total_violation(t: TrialRecord) -> float:
            return sum(max(violation(t, r), 0.0) for r in rules)

        near = min(complete, key=total_violation)
        misses = "; ".join(judge_constraint(r, near.metrics)[1] or f"{r.name()} = {near.metrics[r.name()]:.4g}"
                           for r in rules if violation(near, r) > 0)
        raise ConfigError(f"no complete trial meets {', '.join(r.text() for r in rules)}; the nearest, trial "
                          f"{near.number}, has {misses}")
    best = feasible[0]
    for t in feasible[1:]:
        if objective.better(t.metrics[objective.metric], best.metrics[objective.metric]):
            best = t
    return best


def make_output_run(result: TuneResult, chosen: TrialRecord, selection: Selection) -> ChosenTrial:
    """Copy the chosen trial to ``STUDY/selected`` (replacing an earlier selection) with its lineage; returns what
    was chosen (``run_dir``: the new run folder). The caller evaluates it on the test split."""
    from trustfm.config import dump_config, load_config
    from trustfm.fileio import write_json_atomic
    from trustfm.runs import RunPaths, RunRecord

    source = RunPaths(Path(chosen.run_dir))
    target = RunPaths(Path(result.study_dir) / SELECTED)
    staging = target.root.with_name(f".{SELECTED}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source.root, staging, ignore=shutil.ignore_patterns(*_LEFT_BEHIND))
    staged = RunPaths(staging)
    for name in _KEPT_RESULTS:
        if (source.results / name).exists():
            staged.results.mkdir(exist_ok=True)
            shutil.copy2(source.results / name, staged.results / name)
    config = load_config(source.config)
    config.output_dir = target.root
    dump_config(config, staged.config)
    record = RunRecord.load(staged)
    private = result.privacy is not None  # a DP search withholds which trial won: its number bounds the trial count
    record.tuning = {"study": result.study_dir, "study_name": result.study_name, "journal": result.journal,
                     "trial": None if private else chosen.number, "trial_run": None if private else chosen.run_dir,
                     "rule": selection.text, "params": chosen.params, "private_search": private}
    record.save(staged)
    picked = ChosenTrial(trial=chosen.number, rule=selection.text, run_dir=str(target.root), params=chosen.params,
                         metrics=chosen.metrics)
    released = result.model_copy(update={"chosen": picked})
    if result.privacy is not None:  # the guarantee covers the chosen output only: no other trial, no trial count
        # (nor the search's wall time, which grows with it)
        released = released.model_copy(update={"trials": [], "counts": {}, "front": [], "importances": {},
                                               "seconds": None,
                                               "chosen": released.chosen.model_copy(update={"trial": None})})
    staged.results.mkdir(exist_ok=True)
    write_json_atomic(staged.result("tune"), released.model_dump(mode="json"))
    shutil.rmtree(target.root, ignore_errors=True)
    staging.rename(target.root)
    return picked
