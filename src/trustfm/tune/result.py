"""``tune.json``: a study's trials, front, chosen trial, parameter importances and (DP) the search's privacy cost."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from trustfm.results import Result, put_metric


class TrialRecord(BaseModel):
    """One trial: its run folder, what it was given and what it scored (every metric on the validation split)."""

    number: int
    state: str  # complete | pruned | fail | running
    params: dict[str, float | int | str | bool | None]
    values: list[float] | None = None  # one per objective, for complete trials
    metrics: dict[str, float] = {}
    constraints: dict[str, float] = {}  # rule -> violation (<= 0 when it holds)
    feasible: bool | None = None  # every constraint holds (None: not judged, e.g. pruned)
    intermediate: list[float] = []  # the pruning metric after each epoch
    pruned_at_epoch: int | None = None
    run_dir: str | None = None
    seconds: float | None = None
    worker: str | None = None  # host:pid of the process that ran it (several processes may share a study)
    error: str | None = None
    finished: str | None = None  # ISO 8601, UTC: when the trial ended (for the optimisation history)
    notes: list[str] = []  # constraints judged not met although their own number passed, and why


class ChosenTrial(BaseModel):
    trial: int | None  # None in a DP search's released copy (the winner's number bounds the secret trial count)
    rule: str
    run_dir: str  # the study's output run (a copy of the trial's run folder)
    params: dict[str, float | int | str | bool | None]
    metrics: dict[str, float]


class TuneResult(Result):
    kind: Literal["tune"] = "tune"
    title = "Hyper-parameter search"
    study_name: str
    study_dir: str
    journal: str
    sampler: str
    pruner: str
    space: dict[str, dict]
    objectives: list[dict]  # metric, direction
    constraints: list[str]
    trials_planned: float  # with DP: the mean of the random trial count
    trials: list[TrialRecord]  # empty in a DP study's released copy (the guarantee covers the chosen output only)
    counts: dict[str, int] = {}  # complete, pruned, fail (killed ones included), running, interrupted (killed)
    front: list[int] = []  # trial numbers: the best trial, or the Pareto front of feasible trials
    importances: dict[str, dict[str, float]] = {}  # objective metric -> parameter -> share (sums to 1)
    chosen: ChosenTrial | None = None
    privacy: dict | None = None  # a DP search: method, epsilon, delta, expected trials, ledger
    seconds: float | None = None  # wall time of this process' share of the search
    trial_seconds: float | None = None  # every counted trial's own seconds, whichever process ran it (resumes too)
    finished: str | None = None

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {f"trials.{k}": float(v) for k, v in self.counts.items()}
        if self.chosen is not None:
            for name, value in self.chosen.metrics.items():
                put_metric(out, f"chosen.{name}", value)
        if self.privacy is not None:
            put_metric(out, "privacy.epsilon", self.privacy.get("epsilon"))
        return out

    def flags(self) -> list[str]:
        if self.chosen is not None and self.counts.get("complete", 0) < 2:
            return [f"the search completed {self.counts.get('complete', 0)} trial(s): the chosen settings were "
                    "barely compared with others"]
        return []
