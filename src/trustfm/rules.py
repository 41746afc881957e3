"""Threshold rules over named metrics: ``metric OP number``, as a policy gate and a tuning constraint write them.

A rule is a string (``fairness.group.equalized_odds_difference <= 0.1``) or a
mapping (``{metric: ..., op: "<=", value: 0.1, use: high}``, where ``use`` judges
an interval's bound instead of its point, and ``guard: "validation.macro_f1 >= 0.6"``
a minimum quality without which the rule does not hold). Parsing errors are one line naming
where the rule was written.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustfm.errors import ConfigError

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_RULE = re.compile(r"^\s*([\w.\-&| ]+?)\s*(>=|<=|==|!=|>|<)\s*(-?[\d.eE+-]+)\s*$")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    metric: str
    op: str
    value: float
    use: str = Field("value", pattern="^(value|low|high)$")
    # a minimum-quality guard (a tuning constraint's): the rule holds only where the guard holds too, e.g. a flip
    # rate is no evidence of robustness on a model that fails ``validation.macro_f1 >= 0.6``
    guard: "Rule | None" = None

    def name(self) -> str:
        """The metric name the rule reads (``metric``, or ``metric.low`` / ``metric.high``)."""
        return self.metric if self.use == "value" else f"{self.metric}.{self.use}"

    def text(self) -> str:
        return f"{self.name()} {self.op} {self.value:g}"

    def holds(self, observed: float) -> bool:
        return bool(OPS[self.op](observed, self.value))

    def violation(self, observed: float) -> float:
        """How far ``observed`` is on the wrong side of the threshold (<= 0 when the rule holds), in the metric's
        units: Optuna's constraint convention (feasible when every constraint value is <= 0)."""
        if self.op in ("<=", "<"):
            return observed - self.value if not (self.op == "<" and observed == self.value) else 1e-12
        if self.op in (">=", ">"):
            return self.value - observed if not (self.op == ">" and observed == self.value) else 1e-12
        return 0.0 if self.holds(observed) else abs(observed - self.value)


def parse_rule(item, *, where: str) -> Rule:
    """One rule from a string or a mapping; ``where`` names it in errors (e.g. ``policy.yaml: rule 2``)."""
    if isinstance(item, str):
        match = _RULE.match(item)
        try:
            value = float(match.group(3)) if match else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise ConfigError(f"{where} '{item}' is not 'metric OP number' (OP one of {list(OPS)})")
        return Rule(metric=match.group(1).strip(), op=match.group(2), value=value)
    if isinstance(item, dict):
        item = {str(k): v for k, v in item.items()}
        if item.get("guard") is not None:
            item["guard"] = parse_rule(item["guard"], where=f"{where}: guard")
        try:
            rule = Rule(**item)
        except ValidationError as exc:  # pydantic's message names the field
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(f"{where}: {field}: {first['msg']}") from None
        if rule.op not in OPS:
            raise ConfigError(f"{where}: op must be one of {list(OPS)}")
        return rule
    raise ConfigError(f"{where} must be a string or a mapping")


def unknown_metrics_message(names: Iterable[str], known: Iterable[str]) -> str | None:
    """``'x' (did you mean a, b?); 'y'`` for each name not in ``known``; None when all are known."""
    known = list(known)
    hints = []
    for metric in names:
        if metric in known:
            continue
        close = difflib.get_close_matches(metric, known, n=3, cutoff=0.5)
        hints.append(f"'{metric}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return "; ".join(hints) or None
