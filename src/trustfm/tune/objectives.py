"""What a trial is judged by: metric names, where each comes from, and the rule that selects the output run.

A trial produces three families of numbers, all on the validation split (the
test split stays unseen until the chosen model is audited):

- ``validation.<metric>``: the training loop's validation metrics at the best
  epoch (``validation.macro_f1``, ``validation.accuracy``, ...);
- ``latency.p50_ms`` / ``latency.p95_ms``: one text at a time through the
  trial's :class:`~trustfm.models.predictor.Predictor`;
- every metric of an audit the trial runs, under the names the policy gate uses
  (``fairness.max_fpr_gap``, ``robustness.<perturbation>.flip_rate``, ...).

An objective or constraint whose first name part is a registered audit makes
each trial run that audit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustfm.errors import ConfigError
from trustfm.rules import Rule, parse_rule, unknown_metrics_message

TRIAL_FAMILIES = ("validation", "latency")
LATENCY_METRICS = ("latency.p50_ms", "latency.p95_ms")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # maximize | minimize

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


@dataclass(frozen=True)
class Selection:
    """``--select``: ``best`` (the primary objective among trials meeting every constraint) or
    ``max|min METRIC [where RULE [and RULE ...]]``."""

    text: str
    objective: Objective | None  # None: the study's primary objective
    rules: tuple[Rule, ...] = ()


def parse_objectives(items) -> list[Objective]:
    return [Objective(o.metric, o.direction) for o in items]


def parse_constraints(items) -> list[Rule]:
    return [parse_rule(item, where=f"tune.constraints[{i}]") for i, item in enumerate(items)]


_SELECT = re.compile(r"^\s*(max|min)\s+(\S+)\s*(?:where\s+(.+))?$", re.IGNORECASE)


def parse_selection(text: str) -> Selection:
    """A selection rule; one-line :class:`ConfigError` naming the expected shapes otherwise."""
    text = text.strip()
    if text.lower() == "best":
        return Selection(text, None)
    if text.lower().startswith("best where "):
        clauses = text[len("best where "):]
        return Selection(text, None, _clauses(clauses, text))
    match = _SELECT.match(text)
    if not match:
        raise ConfigError(f"--select '{text}': write 'best', 'best where RULE', or 'max|min METRIC [where RULE "
                          f"[and RULE ...]]', e.g. 'max validation.macro_f1 where fairness.max_fpr_gap <= 0.1'")
    direction = "maximize" if match.group(1).lower() == "max" else "minimize"
    rules = _clauses(match.group(3), text) if match.group(3) else ()
    return Selection(text, Objective(match.group(2), direction), rules)


def _clauses(clauses: str, text: str) -> tuple[Rule, ...]:
    return tuple(parse_rule(c.strip(), where=f"--select '{text}': rule")
                 for c in re.split(r"\s+and\s+", clauses, flags=re.IGNORECASE))


def audits_needed(metric_names: list[str], declared: dict[str, dict], registered: list[str]) -> dict[str, dict]:
    """The audits each trial runs, with their options: those declared in ``tune.audits`` plus those whose name
    starts a metric the search reads. A metric from no family and no audit is an error naming the audits."""
    unknown_audits = [a for a in declared if a not in registered]
    if unknown_audits:
        raise ConfigError(f"tune.audits: unknown audit {unknown_metrics_message(unknown_audits, registered)}; "
                          f"audits: {', '.join(registered)}")
    audits = dict(declared)
    for metric in metric_names:
        family = metric.split(".", 1)[0]
        if family in TRIAL_FAMILIES:
            continue
        if family in registered:
            audits.setdefault(family, {})
        elif not declared:
            raise ConfigError(f"'{metric}': no trial metric or audit is named '{family}'. Trials produce "
                              f"validation.* and {', '.join(LATENCY_METRICS)}, and the metrics of the audits "
                              f"{', '.join(registered)}; name an audit that writes other files in tune.audits")
    return audits


def check_metrics_exist(metric_names: list[str], produced: dict[str, float], *, trial: int) -> None:
    """After a trial: every metric the search reads must be among what it produced (else the study stops)."""
    unknown = unknown_metrics_message(metric_names, produced)
    if unknown:
        raise ConfigError(f"the search reads metrics trial {trial} did not produce: {unknown}")
