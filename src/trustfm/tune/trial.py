"""One trial: train a normal run folder with the trial's settings, report each epoch to the pruner, then score it
on the validation split (latency and the audits the search reads)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from trustfm.train.callbacks import Callback
from trustfm.train.components import TrustComponent


class _EpochReporter(Callback):
    def __init__(self, component: "TrialReporter"):
        self.component = component

    def on_epoch_end(self, trainer, record: dict) -> None:
        component = self.component
        component.epochs.append(record)
        value = record["validation"].get(component.metric)
        if value is None:
            return
        component.intermediate.append(float(value))
        # the last epoch is never pruned: stopping there saves nothing, and would throw away a finished trial
        last = record["epoch"] >= trainer.config.epochs
        if component.should_prune(record["epoch"], float(value), last=last) and not last:
            component.pruned_at_epoch = record["epoch"]
            trainer.should_stop = True  # ends the fit after this epoch; the best epoch so far is the saved model


class TrialReporter(TrustComponent):
    """Joins a trial's training: after each epoch it hands ``validation[metric]`` to ``should_prune(epoch, value,
    last=...)`` and stops the loop when told to (never after the last epoch); records the study and trial in
    ``run.json`` (``tuning``)."""

    name = "tuning_trial"
    adds_to_log = False

    def __init__(self, *, metric: str, should_prune: Callable[..., bool], record: dict):
        self.metric = metric
        self.should_prune = should_prune
        self.record = record
        self.epochs: list[dict] = []
        self.intermediate: list[float] = []
        self.pruned_at_epoch: int | None = None

    def callbacks(self, setup):
        return [_EpochReporter(self)]

    def after_fit(self, setup):
        setup.record.tuning = {**self.record, "pruned_at_epoch": self.pruned_at_epoch}


@dataclass
class TrialOutcome:
    """What a finished trial measured; ``metrics`` is empty when it was pruned."""

    run_dir: Path
    pruned_at_epoch: int | None
    intermediate: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run_trial(config, *, metric: str, should_prune, record: dict, audits: dict[str, dict], latency_texts: int,
              show_progress: bool = False) -> TrialOutcome:
    """Train ``config`` (a plain run config, ``output_dir`` the trial's folder) and score it.

    ``metric``: the validation metric the pruner reads each epoch. ``audits``: audit name -> options, each run on
    the validation split. Returns the validation metrics at the best epoch, ``latency.*`` and every audit metric.
    """
    from trustfm.train.run import train_run

    started = time.perf_counter()
    reporter = TrialReporter(metric=metric, should_prune=should_prune, record=record)
    paths = train_run(config, show_progress=show_progress, extra_components=[reporter])
    outcome = TrialOutcome(paths.root, reporter.pruned_at_epoch, reporter.intermediate)
    if reporter.pruned_at_epoch is None:
        outcome.metrics = score_trial(paths.root, reporter.epochs, audits=audits, latency_texts=latency_texts,
                                      show_progress=show_progress)
    outcome.seconds = time.perf_counter() - started
    return outcome


def score_trial(run_dir: Path, epochs: list[dict], *, audits: dict[str, dict], latency_texts: int,
                show_progress: bool = False) -> dict[str, float]:
    """A trained trial's numbers, all on the validation split (see :mod:`trustfm.tune.objectives`)."""
    from trustfm.audit.context import AuditContext
    from trustfm.audit.registry import registered_audits
    from trustfm.errors import ConfigError
    from trustfm.models.latency import single_text_latency
    from trustfm.results import flatten_results
    from trustfm.runs import RunRecord

    ctx = AuditContext(run_dir, eval_split="validation", show_progress=show_progress)
    best_epoch = RunRecord.load(ctx.paths).training["best_epoch"]
    best = next(r for r in epochs if r["epoch"] == best_epoch)
    metrics = {f"validation.{k}": float(v) for k, v in best["validation"].items() if isinstance(v, (int, float))}
    predicted = ctx.predictor.predict(ctx.data.validation.texts)
    # how constant the model is: a flip-rate or gap constraint says nothing about one that predicts one class
    metrics["validation.majority_share"] = float(np.bincount(predicted).max() / max(len(predicted), 1))
    texts = ctx.data.validation.texts[:latency_texts]
    metrics.update({f"latency.{k}": v for k, v in single_text_latency(ctx.predictor, texts).items()})
    specs = registered_audits()
    written = {}
    for name, options in audits.items():
        spec = specs[name]
        reason = spec.reason_not_applicable(ctx, options)
        if reason:
            raise ConfigError(f"audit {name} does not apply to the trials: {reason}")
        written.update(spec.run(ctx, show_progress=show_progress, **options))
    metrics.update(flatten_results(written))
    return metrics
