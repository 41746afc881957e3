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
never make a gate pass by checking nothing. A metric the run's audits define but
could not judge on its data (a gap between groups when no two groups are large
enough, a worst-group drop on data without groups) makes its rule *not
applicable*, with the reason; ``not_applicable: fail`` in the policy (or ``gate
--not-applicable fail``) makes such a rule fail instead.
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
    observed: float | None  # None: not applicable
    passed: bool
    applicable: bool = True
    reason: str | None = None  # why the rule does not apply to this run


class GateResult(Result):
    kind: Literal["gate"] = "gate"
    policy: str
    passed: bool
    outcomes: list[RuleOutcome]
    not_applicable: Literal["pass", "fail"] = "pass"  # what a rule that cannot apply counts as
    warnings: list[str] = []  # every result's flags (worse-than-chance detectors, ...), whatever the rules say


def load_policy(path: str | Path) -> tuple[str, list[Rule], str]:
    """(name, rules, what a not-applicable rule counts as: "pass" or "fail") of a policy file."""
    from trustfm.config.load import read_yaml_mapping

    path = Path(path)
    spec = read_yaml_mapping(path, what="policy file")
    unknown = {str(k) for k in spec} - {"name", "rules", "not_applicable"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} (a policy has 'name', 'rules' and "
                          "'not_applicable')")
    items = spec.get("rules") or []
    if not isinstance(items, list):
        raise ConfigError(f"{path}: 'rules' must be a list of rules, e.g. - performance.accuracy >= 0.8")
    rules = [parse_rule(item, where=f"{path}: rule {i}") for i, item in enumerate(items, start=1)]
    if not rules:
        raise ConfigError(f"{path}: the policy has no rules")
    not_applicable = spec.get("not_applicable", "pass")
    if not_applicable not in ("pass", "fail"):
        raise ConfigError(f"{path}: not_applicable must be pass or fail, not {not_applicable!r}")
    return spec.get("name", path.stem), rules, not_applicable


def evaluate_policy(name: str, rules: list[Rule], metrics: dict[str, float], *,
                    undefined: dict[str, str] | None = None, not_applicable: str = "pass") -> GateResult:
    """Check every rule against ``metrics`` (see :mod:`trustfm.report.namespace`); a rule on a metric in
    ``undefined`` (name -> why it could not be judged) is not applicable and counts as ``not_applicable``."""
    undefined = undefined or {}
    unknown = unknown_metrics_message([r.name() for r in rules if r.name() not in undefined],
                                      [*metrics, *undefined])
    if unknown:
        raise ConfigError(f"policy names metrics this run does not have: {unknown}. Run the audit that produces "
                          "them first, or see `trustfm gate --list`.")
    outcomes = []
    for rule in rules:
        if rule.name() in metrics:
            observed = metrics[rule.name()]
            outcomes.append(RuleOutcome(rule=rule.text(), metric=rule.name(), observed=observed,
                                        passed=rule.holds(observed)))
        else:
            outcomes.append(RuleOutcome(rule=rule.text(), metric=rule.name(), observed=None,
                                        passed=not_applicable == "pass", applicable=False,
                                        reason=undefined[rule.name()]))
    return GateResult(policy=name, passed=all(o.passed for o in outcomes), outcomes=outcomes,
                      not_applicable=not_applicable)


def run_metrics(run_dir: str | Path, *, undefined: bool = False):
    """Every metric name a policy can use on this run, with its value (the gate's own result excluded); with
    ``undefined``, also the names the run's audits could not judge, with why (a pair of dicts)."""
    from trustfm.report.namespace import read_results
    from trustfm.results import flatten_results, flatten_undefined
    from trustfm.runs import existing_run

    results = read_results(existing_run(run_dir).results, exclude=("gate",))
    return (flatten_results(results), flatten_undefined(results)) if undefined else flatten_results(results)


def gate_run(run_dir: str | Path, policy: str | Path, *, not_applicable: str | None = None) -> GateResult:
    """Check ``policy`` (a YAML file) against the run's recorded results; writes and returns ``results/gate.json``.
    ``not_applicable`` ("pass"/"fail") overrides the policy's own setting."""
    from trustfm.fileio import write_json_atomic
    from trustfm.runs import existing_run

    paths = existing_run(run_dir)
    from trustfm.report.namespace import read_results

    name, rules, policy_not_applicable = load_policy(policy)
    metrics, undefined = run_metrics(paths.root, undefined=True)
    result = evaluate_policy(name, rules, metrics, undefined=undefined,
                             not_applicable=not_applicable or policy_not_applicable)
    result.warnings = [flag for r in read_results(paths.results, exclude=("gate",)).values() for flag in r.flags()]
    write_json_atomic(paths.result("gate"), result.model_dump(mode="json"))
    return result
