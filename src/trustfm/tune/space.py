"""The search space: dotted config keys, each with one distribution, checked against the config schema.

``tune.space`` in YAML::

    train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}
    train.batch_size: {choice: [16, 32, 64]}
    train.epochs: {int: [1, 4]}

Each key must name a value of the run config (a typo gets the closest keys), and
every value the distribution can give must pass the config's own validation
(both ends of a range, every choice), so a bad space fails before any trial runs.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from trustfm.config import RunConfig
from trustfm.errors import ConfigError

KINDS = ("log_uniform", "uniform", "int", "log_int", "choice")
# keys a search may not vary: where the trials are written, and the search's own settings
FIXED_KEYS = ("output_dir",)


@dataclass(frozen=True)
class Dimension:
    """One searched config key: ``kind`` in :data:`KINDS`; ``low``/``high`` for ranges, ``values`` for a choice."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    def suggest(self, trial) -> Any:
        """This key's value for an Optuna trial (the parameter's name is the dotted key)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "log_int")
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log_uniform")

    def grid_values(self) -> list:
        """Every value a grid search tries (a choice's values, an integer range's integers)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise ConfigError(f"tune.space.{self.key}: sampler grid needs choice or int values, not {self.kind} "
                          f"(write the points to try as {{choice: [...]}})")

    def extremes(self) -> list:
        """The values that bound what this dimension can give (checked against the config before any trial)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind in ("int", "log_int"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


def parse_space(space: dict, config: RunConfig) -> list[Dimension]:
    """The dimensions of ``tune.space``, each checked against ``config``; one-line :class:`ConfigError` otherwise."""
    from trustfm.config.load import config_leaf_keys, with_overrides

    if not space:
        raise ConfigError("tune.space is empty: name at least one config key to search, e.g. "
                          "train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}")
    known = [k for k in config_leaf_keys() if not k.startswith("tune.") and k not in FIXED_KEYS]
    dims = []
    for key, spec in space.items():
        where = f"tune.space.{key}"
        if key in FIXED_KEYS or str(key).startswith("tune."):
            raise ConfigError(f"{where}: cannot be searched (where the study is written and how it searches are "
                              "fixed for the whole study)")
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.6)
            raise ConfigError(f"{where}: unknown config key" + (f" (did you mean {', '.join(close)}?)" if close
                                                                 else "; search keys such as train.learning_rate"))
        dim = _dimension(key, spec, where)
        for value in dim.extremes():
            with_overrides(config, {key: value, "tune": None}, source=f"{where} value {value!r}")
        dims.append(dim)
    return dims


def _dimension(key: str, spec, where: str) -> Dimension:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(f"{where}: give one distribution, one of {', '.join(KINDS)} (e.g. {{choice: [16, 32]}})")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice needs a non-empty list of values")
        bad = [v for v in args if v is not None and not isinstance(v, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"{where}: choice values must be numbers, strings, booleans or null, not {bad[0]!r}")
        if len(set(map(repr, args))) != len(args):
            raise ConfigError(f"{where}: choice lists a value twice")
        return Dimension(key, kind, values=tuple(args))
    numeric = isinstance(args, list) and len(args) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in args)
    if not numeric:
        raise ConfigError(f"{where}: {kind} needs [low, high], two finite numbers")
    low, high = args
    if not low < high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind in ("int", "log_int") and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {kind} needs whole numbers, got [{low}, {high}]")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{where}: {kind} needs low > 0, got {low}")
    return Dimension(key, kind, low=float(low), high=float(high))


def grid_space(dims: list[Dimension]) -> dict[str, list]:
    """Optuna's grid: every dimension's values (choice or int only)."""
    return {d.key: d.grid_values() for d in dims}


def grid_size(dims: list[Dimension]) -> int:
    return math.prod(len(d.grid_values()) for d in dims)
