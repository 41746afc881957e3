"""``tune_study``: an Optuna study whose trials are trustfm run folders, kept in a journal file on disk.

::

    OUTPUT_DIR/
      study.journal         Optuna's JournalStorage: resumable, shared by processes on one machine
      study.yaml            the study's resolved config (the base of every trial, and its tune: block)
      trials/0000/          trial 0's run folder (config.yaml, run.json, model/, results/ on validation)
      trials/0000.lock      held while a process works on trial 0; a free lock on a running trial = killed
      trials-ledger.jsonl   a DP search: what each trial's DP-SGD spent (the real ledger is charged once, for
                            the whole search)
      tune.json             the study (:class:`~trustfm.tune.result.TuneResult`)
      selected/             the output run, after ``--select`` (:mod:`trustfm.tune.select`)

Each process asks Optuna for a trial, trains and scores it, and tells Optuna the
result, until the study holds ``tune.trials`` trials (killed ones are retried
with the same settings). Single-objective searches on a validation metric prune
with Optuna's pruner; the others with the median rule on the pruning metric
(Optuna's pruners take one objective).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Callable

from trustfm.config import RunConfig
from trustfm.errors import ConfigError, TrustfmError
from trustfm.fileio import exclusive_lock
from trustfm.runs import now_iso
from trustfm.tune.canaries import share_study_canaries
from trustfm.tune.objectives import Objective
from trustfm.tune.result import TrialRecord, TuneResult

log = logging.getLogger("trustfm.tune")
JOURNAL = "study.journal"
STUDY_CONFIG = "study.yaml"
INTERRUPTED = "interrupted"  # user attribute of a trial whose process died; its settings are tried again
SURPLUS = "surplus"  # user attribute of a trial asked for after the budget was full (never trained)
DP_TRIALS = "dp_trial_count"  # study user attribute: the secret number of trials of a DP search


class StudyPlan:
    """Everything a study needs, parsed and checked from the config before any trial runs."""

    def __init__(self, config: RunConfig):
        from trustfm.audit.registry import registered_audits
        from trustfm.tune.objectives import (audits_needed, guard_names, parse_constraints, parse_objectives,
                                             parse_selection)
        from trustfm.tune.space import grid_size, parse_space

        if config.tune is None:
            raise ConfigError("trustfm tune needs a tune: block in the config (tune.space names the keys to search)")
        self.config = config
        self.tune = tune = config.tune
        self.study_dir = Path(config.output_dir).resolve()
        self.dims = parse_space(tune.space, config)
        self.objectives: list[Objective] = parse_objectives(tune.objectives)
        self.constraints = parse_constraints(tune.constraints, min_quality=tune.min_quality)
        self.selection = parse_selection(tune.select) if tune.select else None
        # a rule may judge an interval's bound (use: high): the name it reads is metric.high
        names = ([o.metric for o in self.objectives] + [r.name() for r in self.constraints]
                 + guard_names(self.constraints))
        if self.selection is not None:
            names += [r.name() for r in self.selection.rules]
            names += [self.selection.objective.metric] if self.selection.objective else []
        self.metric_names = list(dict.fromkeys(names))
        self.audits = audits_needed(self.metric_names, tune.audits, list(registered_audits()))
        if len(self.objectives) > 1 and tune.pruner == "hyperband":
            raise ConfigError("tune.pruner: hyperband judges one objective; with several objectives use median "
                              "(on the primary objective's validation metric) or none")
        if tune.sampler == "nsga2" and len(self.objectives) < 2:
            raise ConfigError("tune.sampler: nsga2 searches several objectives; add tune.objectives or use tpe")
        self.trials = tune.trials
        if tune.sampler == "grid":
            self.trials = min(self.trials, grid_size(self.dims))
        # the metric each epoch reports to the pruner: the first validation objective, else early stopping's
        validation = next((o for o in self.objectives if o.metric.startswith("validation.")), None)
        stop = config.train.early_stopping
        self.prune_metric = (validation.metric.removeprefix("validation.") if validation else
                             (stop.metric if stop else "macro_f1"))
        self.prune_direction = (validation.direction if validation else
                                ("minimize" if stop and stop.mode == "min" else "maximize"))
        # Optuna's own pruners read single-objective studies whose objective is the reported metric
        self.optuna_prunes = (len(self.objectives) == 1 and validation is not None and tune.pruner != "none")
        self.privacy = None
        if config.privacy.dp is not None:
            from trustfm.tune.privacy import plan_tuning_privacy

            self.n_train, self.train_sha256 = _training_rows(config)
            self.privacy = plan_tuning_privacy(config, self.dims, n_train=self.n_train)

    @property
    def journal(self) -> Path:
        return self.study_dir / JOURNAL

    @property
    def study_name(self) -> str:
        return self.tune.study_name or self.study_dir.name

    def trial_dir(self, number: int) -> Path:
        return self.study_dir / "trials" / f"{number:04d}"

    def trial_lock(self, number: int) -> Path:
        """Held by the process working on trial ``number``: a running trial whose lock is free was killed."""
        return self.trial_dir(number).with_suffix(".lock")

    def trial_config(self, number: int, params: dict) -> RunConfig:
        """Trial ``number``'s plain run config: the study's, with ``params`` set and its own run folder."""
        from trustfm.config.load import with_overrides

        overrides = {**params, "output_dir": str(self.trial_dir(number)), "tune": None}
        if self.privacy is not None:  # trials record their spend in the study's own ledger; the search is charged
            overrides.update({"privacy.ledger": str(self.study_dir / "trials-ledger.jsonl"),
                              "privacy.total_epsilon": None})
        return with_overrides(self.config, overrides, source=f"trial {number}")


def _training_rows(config: RunConfig) -> tuple[int, str]:
    """(training rows DP-SGD will see, the training file's sha256), prepared as a run prepares them."""
    from transformers import AutoTokenizer

    from trustfm.data.prepare import apply_length_policies, prepare_data
    from trustfm.models.loading import resolve_model_dir

    if config.fairness.mitigation == "counterfactual_augmentation" or config.robustness.augmentation is not None:
        raise ConfigError("a DP search cannot use augmentation (counterfactual or perturbation): the accounting "
                          "needs the training row count before the first trial")
    data = prepare_data(config.data, seed=config.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(config.model.name_or_path), local_files_only=True)
    apply_length_policies(data, tokenizer, config.data)
    return len(data.train), data.file_hashes[str(config.data.train)]


def check_journal(plan: StudyPlan, *, resume: bool) -> None:
    """A new study needs a folder without one; ``--resume`` needs one."""
    exists = plan.journal.exists()
    if exists and not resume:
        raise ConfigError(f"{plan.study_dir} already holds a study ({JOURNAL}): continue or join it with --resume, "
                          "or choose another output_dir")
    if resume and not exists:
        raise ConfigError(f"nothing to resume: {plan.journal} does not exist")


def open_study(plan: StudyPlan, *, resume: bool):
    """The study in ``plan.journal``: created, or loaded with ``resume`` (see :func:`check_journal`)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    check_journal(plan, resume=resume)
    exists = plan.journal.exists()
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(plan.journal)))
    directions = [o.direction for o in plan.objectives]
    if exists:
        try:
            study = optuna.load_study(study_name=plan.study_name, storage=storage)
        except KeyError:
            raise ConfigError(f"{plan.journal} holds no study named {plan.study_name!r} (tune.study_name)") from None
        recorded = study.user_attrs.get("space")
        if (recorded is not None and recorded != plan.tune.space) or [
                d.name.lower() for d in study.directions] != directions:
            raise ConfigError(f"{plan.journal} was created with another search space or objectives; resume it with "
                              "the config it started with, or start a new study in another output_dir")
    else:
        from trustfm.config import dump_config

        dump_config(plan.config, plan.study_dir / STUDY_CONFIG)  # the search as it was asked for, defaults filled
        study = optuna.create_study(study_name=plan.study_name, storage=storage, directions=directions)
        study.set_user_attr("space", plan.tune.space)
        study.set_user_attr("objectives", [o.__dict__ for o in plan.objectives])
        if plan.privacy is not None:
            # drawn once per study, before any process can join it, from the operating system's randomness (the
            # guarantee needs the count secret)
            from trustfm.tune.privacy import draw_trials

            study.set_user_attr(DP_TRIALS, draw_trials(plan.privacy.eta, plan.privacy.gamma))
    # each process draws from its own stream: two processes joining one study must not propose the same trials
    study.sampler = _sampler(plan, seed=plan.config.seed + len(study.trials))
    study.pruner = _pruner(plan)
    return study


def _sampler(plan: StudyPlan, *, seed: int):
    import optuna

    tune = plan.tune
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "grid":
        from trustfm.tune.space import grid_space

        class AskTellGrid(optuna.samplers.GridSampler):
            # Optuna's grid stops `study.optimize` when the grid is exhausted, which raises outside it; this loop
            # asks for exactly the grid's size (plan.trials) instead
            def after_trial(self, study, trial, state, values) -> None:
                return None

        return AskTellGrid(grid_space(plan.dims), seed=seed)
    if tune.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, plan.trials // 4)))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials, multivariate=True,
                                      constant_liar=True)


def _pruner(plan: StudyPlan):
    import optuna

    if not plan.optuna_prunes:
        return optuna.pruners.NopPruner()
    if plan.tune.pruner == "hyperband":
        epochs = [plan.config.train.epochs] + [v for d in plan.dims if d.key == "train.epochs" for v in d.extremes()]
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs), reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=plan.tune.startup_trials, n_warmup_steps=0)


def retry_interrupted(study, plan: StudyPlan) -> list[int]:
    """Trials left running by a process that died (their lock is free): marked failed and ``interrupted``, and
    their settings queued again. Returns their numbers."""
    from optuna.trial import TrialState

    storage = study._storage
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        with exclusive_lock(plan.trial_lock(trial.number), blocking=False) as free:
            if not free:
                continue  # another process is working on it
            storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            _mark_abandoned(plan.trial_dir(trial.number))
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
            retried.append(trial.number)
    return retried


def _mark_abandoned(run_dir: Path) -> None:
    """A killed trial's run folder says so (``status: abandoned``): it is retried in a new trial, never finished."""
    from trustfm.runs import RunPaths, RunRecord

    paths = RunPaths(run_dir)
    if paths.run_info.is_file():
        record = RunRecord.load(paths)
        if record.status == "running":
            record.status = "abandoned"
            record.finished = now_iso()
            data = record.model_dump(mode="json", exclude_none=True)
            data["abandoned"] = "the process running this tuning trial was killed; the study retried its settings"
            RunRecord.model_validate(data).save(paths)


def _counted(trial) -> bool:
    """Whether a trial uses the budget: not one queued and not yet started, killed (retried) or surplus."""
    from optuna.trial import TrialState

    return trial.state != TrialState.WAITING and not (trial.user_attrs.get(INTERRUPTED)
                                                      or trial.user_attrs.get(SURPLUS))


def _budget(study, plan: StudyPlan) -> int:
    """Trials the study holds when done: ``tune.trials`` (the grid's size at most), or a DP search's secret draw."""
    return plan.trials if plan.privacy is None else int(study.user_attrs[DP_TRIALS])


def median_rule(study, trial_number: int, epoch: int, value: float, *, direction: str, startup: int) -> bool:
    """Our median pruner for studies Optuna's pruners do not take (several objectives, or an objective other than
    the reported metric): stop when ``value`` at ``epoch`` is worse than the median of the other finished trials'
    values at that epoch, once ``startup`` trials have one."""
    import numpy as np
    from optuna.trial import TrialState

    others = [t.user_attrs.get("intermediate", []) for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)) if t.number != trial_number]
    at_epoch = [values[epoch - 1] for values in others if len(values) >= epoch]
    if len(at_epoch) < max(startup, 1):
        return False
    median = float(np.median(at_epoch))
    return value < median if direction == "maximize" else value > median


def tune_study(config: RunConfig, *, resume: bool = False, show_progress: bool = True,
               on_trial: Callable[[TrialRecord, TuneResult], None] | None = None) -> TuneResult:
    """Run (or resume, or join) the study ``config.tune`` describes in ``config.output_dir``; returns the study's
    result, also written to ``OUTPUT_DIR/tune.json``. ``on_trial(record, result)`` is called after each trial this
    process runs (a live table)."""
    plan = StudyPlan(config)
    check_journal(plan, resume=resume)
    # a DP search is charged before its study exists: refused over budget, it leaves nothing behind
    ledger_key = _charge_search(plan) if plan.privacy is not None else None
    study = open_study(plan, resume=resume)
    share_study_canaries(plan)  # privacy.audit: one set of canaries for every trial
    retry_interrupted(study, plan)
    budget = _budget(study, plan)
    started = time.perf_counter()
    while sum(_counted(t) for t in study.get_trials(deepcopy=False)) < budget:
        trial = _ask_within(study, budget)
        if trial is None:
            break
        with exclusive_lock(plan.trial_lock(trial.number)):
            _run_and_tell(study, plan, trial, show_progress=show_progress)
        _notify(on_trial, study, plan, trial.number, started)
    result = summarise_study(study, plan, seconds=time.perf_counter() - started)
    if ledger_key is not None:
        result.privacy["ledger_entry"] = ledger_key
    write_study_result(plan.study_dir, result)
    return result


def _ask_within(study, budget: int):
    """A new trial, or None when other processes filled the budget meanwhile (the trial asked for is then marked
    surplus and failed, never trained)."""
    from optuna.trial import TrialState

    trial = study.ask()
    ahead = sum(_counted(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
    if ahead < budget:
        return trial
    study._storage.set_trial_user_attr(trial._trial_id, SURPLUS, True)
    study.tell(trial, state=TrialState.FAIL)
    return None


def _run_and_tell(study, plan: StudyPlan, trial, *, show_progress: bool) -> None:
    """Train and score one trial, then tell Optuna: complete (values, constraints), pruned, or failed. A user error
    on a study with no complete trial yet stops the study (every trial would fail the same way); a metric the search
    reads but the trial did not produce stops it too."""
    from optuna.trial import TrialState

    from trustfm.tune.objectives import check_metrics_exist, judge_constraint
    from trustfm.tune.canaries import seed_trial_canaries
    from trustfm.tune.trial import run_trial

    params = {d.key: d.suggest(trial) for d in plan.dims}

    def should_prune(epoch: int, value: float, *, last: bool) -> bool:
        trial.set_user_attr("intermediate", [*trial.user_attrs.get("intermediate", []), value][:epoch])
        if plan.optuna_prunes:
            trial.report(value, epoch)
        if plan.tune.pruner == "none" or last:
            return False
        if plan.optuna_prunes:
            return trial.should_prune()
        return median_rule(study, trial.number, epoch, value, direction=plan.prune_direction,
                           startup=plan.tune.startup_trials)

    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    record = {"study": str(plan.study_dir), "study_name": plan.study_name, "trial": trial.number, "params": params}
    seed_trial_canaries(plan, trial.number)
    try:
        outcome = run_trial(plan.trial_config(trial.number, params), metric=plan.prune_metric,
                            should_prune=should_prune, record=record, audits=plan.audits,
                            latency_texts=plan.tune.latency_texts, show_progress=show_progress)
    except TrustfmError as exc:
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise
        return
    trial.set_user_attr("run_dir", str(outcome.run_dir))
    trial.set_user_attr("seconds", round(outcome.seconds, 2))
    if outcome.pruned_at_epoch is not None:
        trial.set_user_attr("pruned_at_epoch", outcome.pruned_at_epoch)
        study.tell(trial, state=TrialState.PRUNED)
        return
    try:
        check_metrics_exist(plan.metric_names, outcome.metrics, trial=trial.number)
        if plan.privacy is not None:
            _check_trial_privacy(plan, outcome.run_dir, trial.number)
    except ConfigError as exc:
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        raise
    trial.set_user_attr("metrics", outcome.metrics)
    notes = []
    for rule in plan.constraints:
        violation, why = judge_constraint(rule, outcome.metrics)
        trial.set_constraint(rule.text(), violation)
        notes += [why] if why else []
    if notes:
        trial.set_user_attr("notes", notes)
    study.tell(trial, [outcome.metrics[o.metric] for o in plan.objectives])


def _notify(on_trial, study, plan, number: int, started: float) -> None:
    if on_trial is None:
        return
    result = summarise_study(study, plan, seconds=time.perf_counter() - started, importances=False)
    record = next((t for t in result.trials if t.number == number), None)
    if record is not None:
        on_trial(record, result)


def _charge_search(plan: StudyPlan) -> str:
    """Reserve the whole search's epsilon in the privacy ledger, under the study folder (idempotent on resume); a
    search that would pass ``privacy.total_epsilon`` is refused before any trial, with what it would cost."""
    from trustfm.train.ledger import PrivacyLedger, ledger_path, run_key

    cost = plan.privacy
    key = run_key(plan.study_dir)
    ledger = PrivacyLedger(ledger_path(plan.config.privacy.ledger))
    try:
        ledger.reserve(run_dir=key, data_sha256=plan.train_sha256, dataset=str(plan.config.data.train),
                       epsilon=cost.epsilon, delta=cost.delta, accountant="rdp, tuning (Papernot-Steinke)",
                       total_budget=plan.config.privacy.total_epsilon)
    except ConfigError as exc:
        raise ConfigError(f"the search would cost epsilon {cost.epsilon:.3g} at delta {cost.delta:.0e} (each trial "
                          f"up to {cost.trial_epsilon:.3g}, {cost.expected_trials:.3g} trials expected): {exc}; a search "
                          "also costs less with fewer tune.trials") from None
    # the bound covers the search whatever the number of trials drawn: what is reserved is what is spent
    ledger.settle(key, cost.epsilon)
    return key


def _check_trial_privacy(plan: StudyPlan, run_dir: Path, number: int) -> None:
    from trustfm.runs import RunPaths, RunRecord
    from trustfm.tune.privacy import check_trial_within_plan

    record = RunRecord.load(RunPaths(run_dir))
    check_trial_within_plan(plan.privacy, record.privacy, record.training["steps"], trial=number)


def trial_record(trial) -> TrialRecord:
    """A frozen Optuna trial as the study's result lists it."""
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]
    attrs = trial.user_attrs
    constraints = dict(trial.constraints) if state == "complete" else {}
    return TrialRecord(
        number=trial.number, state=state, params=dict(trial.params),
        values=list(trial.values) if state == "complete" else None, metrics=attrs.get("metrics", {}),
        constraints=constraints, feasible=all(v <= 0 for v in constraints.values()) if state == "complete" else None,
        intermediate=attrs.get("intermediate", []), pruned_at_epoch=attrs.get("pruned_at_epoch"),
        run_dir=attrs.get("run_dir"), seconds=attrs.get("seconds"), worker=attrs.get("worker"), error=attrs.get("error"),
        notes=attrs.get("notes", []),
        finished=trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else None)


def summarise_study(study, plan: StudyPlan, *, seconds: float | None = None, importances: bool = True) -> TuneResult:
    """The study as a :class:`TuneResult`: every counted trial, the front of feasible trials, the importances."""
    every = study.get_trials(deepcopy=False)
    trials = [trial_record(t) for t in every if _counted(t)]
    counts = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    # killed trials (retried, so outside the budget) are failures too: the journal marks them so
    counts["interrupted"] = sum(1 for t in every if t.user_attrs.get(INTERRUPTED))
    counts["fail"] += counts["interrupted"]
    return TuneResult(
        study_name=plan.study_name, study_dir=str(plan.study_dir), journal=str(plan.journal),
        sampler=plan.tune.sampler, pruner=plan.tune.pruner if plan.tune.pruner == "none" or plan.optuna_prunes
        else f"{plan.tune.pruner} (trustfm's median rule on validation {plan.prune_metric})",
        space=plan.tune.space, objectives=[o.__dict__ for o in plan.objectives],
        constraints=[r.text() for r in plan.constraints],
        trials_planned=plan.privacy.expected_trials if plan.privacy else plan.trials, trials=trials, counts=counts,
        # Optuna's front: complete trials meeting every constraint that no other such trial dominates
        front=sorted(t.number for t in study.best_trials),
        importances=param_importances(study, plan) if importances else {},
        privacy=plan.privacy.as_dict() if plan.privacy else None,
        seconds=round(seconds, 2) if seconds is not None else None, finished=now_iso(),
        trial_seconds=round(sum(t.seconds or 0.0 for t in trials), 2))


def param_importances(study, plan: StudyPlan) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances (PED-ANOVA, its default) per objective; empty until there is enough to
    compare (two complete trials with varied parameters)."""
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or len(plan.dims) < 1:
        return {}
    out = {}
    for i, objective in enumerate(plan.objectives):
        # PED-ANOVA ranks what leads to low target values: a maximised objective is negated. Its notes (that reminder,
        # and that with few trials every trial can fall in its top quantile, making importances equal) are silenced:
        # the report shows the importances with the trial count beside them
        sign = -1.0 if objective.direction == "maximize" else 1.0
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
                scores = get_param_importances(study, target=lambda t, i=i, sign=sign: sign * t.values[i])
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            log.info("no importances for %s: %s", objective.metric, exc)
            continue
        out[objective.metric] = {k: round(float(v), 4) for k, v in scores.items()}
    return out


def write_study_result(study_dir: str | Path, result: TuneResult) -> Path:
    """``STUDY_DIR/tune.json``, written atomically."""
    from trustfm.fileio import write_json_atomic

    path = Path(study_dir) / "tune.json"
    write_json_atomic(path, result.model_dump(mode="json"))
    return path
