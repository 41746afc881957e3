"""Policy gate: YAML thresholds over any audit number; PASS only when every rule holds.

A policy file::

    name: release-gate
    rules:
      - accuracy >= 0.85
      - fairness.eec-style.gender.dp_difference <= 0.05
      - metric: performance.expected_calibration_error
        op: "<="
        value: 0.05
        use: high            # judge the interval's upper bound, not the point

Unknown metric names are errors (with the closest known names), so a typo can
never make a gate pass by checking nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.results import Result
from trustfm.rules import Rule, parse_rule, unknown_metrics_message


class RuleOutcome(BaseModel):
    rule: str
    metric: str
    observed: float
    passed: bool


class GateResult(Result):
    kind: Literal["gate"] = "gate"
    policy: str
    passed: bool
    outcomes: list[RuleOutcome]
    warnings: list[str] = []  # every result's flags (worse-than-chance detectors, ...), whatever the rules say


def load_policy(path: str | Path) -> tuple[str, list[Rule]]:
    from trustfm.config.load import read_yaml_mapping

    path = Path(path)
    spec = read_yaml_mapping(path, what="policy file")
    unknown = {str(k) for k in spec} - {"name", "rules"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} (a policy has 'name' and 'rules')")
    items = spec.get("rules") or []
    if not isinstance(items, list):
        raise ConfigError(f"{path}: 'rules' must be a list of rules, e.g. - performance.accuracy >= 0.8")
    rules = [parse_rule(item, where=f"{path}: rule {i}") for i, item in enumerate(items, start=1)]
    if not rules:
        raise ConfigError(f"{path}: the policy has no rules")
    return spec.get("name", path.stem), rules


def evaluate_policy(name: str, rules: list[Rule], metrics: dict[str, float]) -> GateResult:
    """Check every rule against ``metrics`` (see :mod:`trustfm.report.namespace`)."""
    unknown = unknown_metrics_message([r.name() for r in rules], metrics)
    if unknown:
        raise ConfigError(f"policy names metrics this run does not have: {unknown}. Run the audit that produces "
                          "them first, or see `trustfm gate --list`.")
    outcomes = []
    for rule in rules:
        observed = metrics[rule.name()]
        outcomes.append(RuleOutcome(rule=rule.text(), metric=rule.name(), observed=observed,
                                    passed=rule.holds(observed)))
    return GateResult(policy=name, passed=all(o.passed for o in outcomes), outcomes=outcomes)


def run_metrics(run_dir: str | Path) -> dict[str, float]:
    """Every metric name a policy can use on this run, with its value (the gate's own result excluded)."""
    from trustfm.report.namespace import read_results
    from trustfm.results import flatten_results
    from trustfm.runs import existing_run

    return flatten_results(read_results(existing_run(run_dir).results, exclude=("gate",)))


def gate_run(run_dir: str | Path, policy: str | Path) -> GateResult:
    """Check ``policy`` (a YAML file) against the run's recorded results; writes and returns ``results/gate.json``."""
    from trustfm.fileio import write_json_atomic
    from trustfm.runs import existing_run

    paths = existing_run(run_dir)
    from trustfm.report.namespace import read_results

    name, rules = load_policy(policy)
    result = evaluate_policy(name, rules, run_metrics(paths.root))
    result.warnings = [flag for r in read_results(paths.results, exclude=("gate",)).values() for flag in r.flags()]
    write_json_atomic(paths.result("gate"), result.model_dump(mode="json"))
    return result
