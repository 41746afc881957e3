"""Typed result files: every ``results/*.json`` names its ``kind``, and its model says what its numbers are.

A result model subclasses :class:`Result` with ``kind: Literal["name"] = "name"``;
defining the class registers it. Readers (report, gate, model card, CLI) load a
file with :func:`load_result` and dispatch on ``kind``: nothing guesses a
file's kind from its keys, and nothing outside the model recomputes its numbers.

``metrics()`` is the flat view the policy gate and dashboards use: dotted names
(relative to the file's prefix) to floats; a number with an interval also gives
``name.low`` and ``name.high``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError, field_validator

from trustfm.errors import ConfigError
from trustfm.metrics import percentile_interval

_RESULT_MODELS: dict[str, type["Result"]] = {}


class Interval(BaseModel):
    """A point estimate with its bootstrap interval at ``confidence``."""

    value: float  # NaN where the number is undefined (written as null in JSON, read back as NaN)
    low: float | None = None
    high: float | None = None
    confidence: float | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _undefined(cls, value):
        return float("nan") if value is None else value

    @classmethod
    def from_draws(cls, value: float, draws: np.ndarray | None, confidence: float) -> "Interval":
        """``value`` with the percentile interval of its bootstrap ``draws`` (no interval if there are none)."""
        if draws is None or len(draws) == 0:
            return cls(value=value)
        low, high = percentile_interval(np.asarray(draws), confidence)
        return cls(value=value, low=low, high=high, confidence=confidence)


def bootstrap_mean(values: np.ndarray, *, samples: int, confidence: float, rng: np.random.Generator) -> Interval:
    """Mean of per-row ``values`` (n,) with a row-resampling bootstrap interval (none for n < 2 or no samples)."""
    values = np.asarray(values, dtype=np.float64)
    value = float(values.mean())
    if samples <= 0 or len(values) < 2:
        return Interval(value=value)
    draws = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return Interval.from_draws(value, draws, confidence)


def put_metric(out: dict[str, float], name: str, value: Any) -> None:
    """Add ``value`` under ``name`` when it is a number, a bool, or an interval (``{value, low, high}``)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        out[name] = float(value)
    elif isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        out[name] = float(value)
    elif isinstance(value, dict) and "value" in value and set(value) <= {"value", "low", "high", "confidence"}:
        put_metric(out, name, value["value"])
        if value.get("low") is not None:
            out[f"{name}.low"] = float(value["low"])
            out[f"{name}.high"] = float(value["high"])


def per_item_metrics(items, label: str, keys: tuple[str, ...]) -> dict[str, float]:
    """``<item.label>.<key>`` for each item and key (numbers and intervals; a None value is left out)."""
    out: dict[str, float] = {}
    for item in items:
        for key in keys:
            put_metric(out, f"{getattr(item, label)}.{key}", getattr(item, key))
    return out


class Result(BaseModel):
    """Base of every result file's model. Subclasses set ``kind: Literal["..."] = "..."``."""

    kind: str
    # human-readable title of the kind, for reports and error messages
    title: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind = cls.model_fields["kind"].default
        if isinstance(kind, str) and kind:
            if kind in _RESULT_MODELS and _RESULT_MODELS[kind].__qualname__ != cls.__qualname__:
                raise ValueError(f"result kind '{kind}' is already defined by {_RESULT_MODELS[kind].__qualname__}")
            _RESULT_MODELS[kind] = cls

    def flags(self) -> list[str]:
        """Warnings a reviewer must see whatever the policy says (e.g. a detector worse than chance); one line
        each. Default: none."""
        return []

    def undefined_metrics(self) -> dict[str, str]:
        """Metric names this result defines but could not judge on this data (a gap between groups too small),
        with why; the gate reports a rule on one as not applicable. Default: none."""
        return {}

    def metrics(self) -> dict[str, float]:
        """Flat numbers of this result (names relative to the file's prefix). Default: its top-level numbers,
        booleans and intervals."""
        out: dict[str, float] = {}
        for key in type(self).model_fields:
            put_metric(out, key, getattr(self, key))
        return out


def result_models() -> dict[str, type[Result]]:
    """Every result kind defined so far, by kind (import the stage modules that define them first)."""
    return dict(_RESULT_MODELS)


def parse_result(document: dict, *, source: str = "result") -> Result:
    """The typed result of a JSON document, by its ``kind``. Raises ConfigError naming ``source`` otherwise."""
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind is None:
        raise ConfigError(f"{source}: no 'kind' field (written by an older trustfm?): run its audit again")
    model = _RESULT_MODELS.get(kind)
    if model is None:
        raise ConfigError(f"{source}: unknown result kind '{kind}'; known: {', '.join(sorted(_RESULT_MODELS))}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: field {where}: {first['msg']}") from None


def load_result(path: str | Path) -> Result:
    """Read and validate one ``results/*.json`` file."""
    from trustfm.runs import read_json

    return parse_result(read_json(Path(path)), source=str(path))


# short aliases a policy may use for the headline numbers
ALIASES = {
    "accuracy": "performance.accuracy",
    "macro_f1": "performance.macro_f1",
    "roc_auc": "performance.roc_auc",
    "expected_calibration_error": "performance.expected_calibration_error",
}


def metric_prefix(file_stem: str) -> str:
    """The namespace prefix of a result file: its stem, with ``fairness-<probe>`` written ``fairness.<probe>``."""
    return file_stem.replace("-", ".", 1) if file_stem.startswith("fairness-") else file_stem


def flatten_undefined(results: dict[str, Result]) -> dict[str, str]:
    """Dotted metric names (as :func:`flatten_results` names them) that a result could not judge -> why."""
    out: dict[str, str] = {}
    for file_stem, result in results.items():
        prefix = metric_prefix(file_stem)
        out.update({f"{prefix}.{name}": why for name, why in result.undefined_metrics().items()})
    for alias, target in ALIASES.items():
        if target in out:
            out[alias] = out[target]
    return out


def flatten_results(results: dict[str, Result]) -> dict[str, float]:
    """Dotted metric names -> numbers, from a run's typed results (file stem -> result); the namespace policies,
    tuning constraints and dashboards read (:mod:`trustfm.report.namespace`)."""
    out: dict[str, float] = {}
    for file_stem, result in results.items():
        prefix = metric_prefix(file_stem)
        for name, value in result.metrics().items():
            out[f"{prefix}.{name}"] = value
    for alias, target in ALIASES.items():
        for suffix in ("", ".low", ".high"):
            if target + suffix in out:
                out[alias + suffix] = out[target + suffix]
    return out
