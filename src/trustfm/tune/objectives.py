"""What a trial is judged by: metric names, where each comes from, and the rule that selects the output run.

A trial produces three families of numbers, all on the validation split (the
test split stays unseen until the chosen model is audited):

- ``validation.<metric>``: the training loop's validation metrics at the best
  epoch (``validation.macro_f1``, ``validation.accuracy``, ...);
- ``latency.p50_ms`` / ``latency.p95_ms``: one text at a time through the
  trial's :class:`~trustfm.models.predictor.Predictor`;
- every metric of an audit the trial runs, under the names the policy gate uses
  (``fairness.max_fpr_gap``, ``robustness.<perturbation>.flip_rate``, ...);
- ``validation.majority_share``: the share of validation predictions in the most predicted class.

A constraint that a constant model meets by doing nothing (a flip rate, an attack's
success rate, a gap between groups) says nothing about a trial whose predictions are
nearly constant (``validation.majority_share`` at least :data:`NEAR_CONSTANT`): such a
trial does not meet it, and its record says why. A constraint may also carry a
``guard`` (a minimum quality such as ``validation.macro_f1 >= 0.6``), and
``tune.min_quality`` guards every constraint.

An objective or constraint whose first name part is a registered audit makes
each trial run that audit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustfm.errors import ConfigError
from trustfm.rules import Rule, parse_rule, unknown_metrics_message

TRIAL_FAMILIES = ("validation", "latency")
NEAR_CONSTANT = 0.95  # validation.majority_share from which a trial counts as near-constant
# metric name parts a constant model meets trivially (nothing flips, no group differs from another)
TRIVIAL_FOR_CONSTANT = ("flip_rate", "success_rate", "_gap", "_difference", "mean_abs_change")
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


def parse_constraints(items, *, min_quality=None) -> list[Rule]:
    """The study's constraints; ``min_quality`` (a rule) guards each one that has no guard of its own."""
    rules = [parse_rule(item, where=f"tune.constraints[{i}]") for i, item in enumerate(items)]
    if min_quality is not None:
        guard = parse_rule(min_quality, where="tune.min_quality")
        rules = [r if r.guard is not None else r.model_copy(update={"guard": guard}) for r in rules]
    return rules


def judge_constraint(rule: Rule, metrics: dict[str, float]) -> tuple[float, str | None]:
    """(violation, why) of ``rule`` on a trial's ``metrics``: Optuna's convention (<= 0 holds); ``why`` says when
    the rule fails although its own number would pass (a failed guard, a near-constant model)."""
    violation = rule.violation(metrics[rule.name()])
    share = metrics.get("validation.majority_share")
    if rule.guard is not None and not rule.guard.holds(metrics[rule.guard.name()]):
        return max(violation, rule.guard.violation(metrics[rule.guard.name()]), 1e-12), (
            f"{rule.text()}: not met, its guard {rule.guard.text()} fails ({metrics[rule.guard.name()]:.4g})")
    if share is not None and share >= NEAR_CONSTANT and any(p in rule.metric for p in TRIVIAL_FOR_CONSTANT):
        return max(violation, share - NEAR_CONSTANT + 1e-6), (
            f"{rule.text()}: not met, the model is near-constant ({share:.1%} of validation predictions are one "
            "class), and a near-constant model meets it by doing nothing")
    return violation, None


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


def guard_names(rules: list[Rule]) -> list[str]:
    """The metric names the rules' guards read."""
    return [r.guard.name() for r in rules if r.guard is not None]


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
