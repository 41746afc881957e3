"""Registry of audits: new audits plug in here instead of editing a dispatcher.

An audit registers a name, a one-line description, the function that runs it
(``run(ctx, **options)``: writes its results to ``results/`` and returns them
by file name), and optionally ``why_not_applicable(ctx, options) -> None | reason``,
the reason it cannot run on a given run (None: it can). ``ctx`` is the
run's :class:`~trustfm.audit.context.AuditContext`, built once per command.
``trustfm audit RUN_DIR --all`` runs every registered audit that applies and
records the reasons for the others.

The built-in audits register when :func:`load_builtin_audits` imports their
modules; an extension registers by being imported before the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# registry order is run order: robustness before explanations, whose error slices read its result
BUILTIN_MODULES = (
    "trustfm.audit.performance.plugin", "trustfm.audit.fairness.plugin", "trustfm.audit.robustness.plugin",
    "trustfm.audit.explanations.plugin", "trustfm.audit.attacks.plugin", "trustfm.audit.ood.plugin",
    "trustfm.audit.output_rules.plugin", "trustfm.audit.ensemble.plugin", "trustfm.audit.membership.plugin",
    "trustfm.audit.data_quality.plugin",
)


@dataclass(frozen=True)
class AuditSpec:
    name: str
    description: str
    run: Callable  # (ctx, **options) -> dict[result file name, result]
    why_not_applicable: Callable | None = None  # (ctx, options) -> None when it can run, else the reason
    results: tuple[type, ...] = ()  # the Result models it writes (their kinds become known to every reader)


_AUDITS: dict[str, AuditSpec] = {}


def register_audit(name: str, description: str, *, results: tuple[type, ...] = (),
                   why_not_applicable: Callable | None = None) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_audit("fairness", "...", results=(FairnessResult,))`` on the audit's run function."""

    def wrap(func: Callable) -> Callable:
        if name in _AUDITS and _AUDITS[name].run is not func:
            raise ValueError(f"audit '{name}' is already registered")
        _AUDITS[name] = AuditSpec(name, description, func, why_not_applicable, tuple(results))
        return func

    return wrap


def load_builtin_audits() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def registered_audits() -> dict[str, AuditSpec]:
    """All registered audits by name, built-in ones included."""
    load_builtin_audits()
    return dict(_AUDITS)
