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

import functools
from dataclasses import dataclass
from typing import Callable

# registry order is run order: robustness before explanations, whose error slices read its result
BUILTIN_MODULES = (
    "trustfm.audit.performance.plugin", "trustfm.audit.fairness.plugin", "trustfm.audit.robustness.plugin",
    "trustfm.audit.explanations.plugin", "trustfm.audit.attacks.plugin", "trustfm.audit.ood.plugin",
    "trustfm.audit.output_rules.plugin", "trustfm.audit.ensemble.plugin", "trustfm.audit.membership.plugin",
    "trustfm.audit.data_quality.plugin", "trustfm.audit.corruption.plugin", "trustfm.audit.adversarial.plugin",
    "trustfm.audit.attributions.plugin", "trustfm.audit.canaries.plugin",
)


@dataclass(frozen=True)
class AuditSpec:
    name: str
    description: str
    run: Callable  # (ctx, **options) -> dict[result file name, result]
    why_not_applicable: Callable | None = None  # (ctx, options) -> None when it can run, else the reason
    results: tuple[type, ...] = ()  # the Result models it writes (their kinds become known to every reader)
    modalities: tuple[str, ...] = ("text",)  # the data.modality values it can audit
    # the options that bound how many examples it reads (``max_texts``, ``max_images``, ...): ``audit --all
    # --max-examples N`` sets each of them to N
    budget: tuple[str, ...] = ()

    def budget_options(self, examples: int | None) -> dict:
        """This audit's budget options set to ``examples`` (none when ``examples`` is None)."""
        return {} if examples is None else dict.fromkeys(self.budget, examples)

    def reason_not_applicable(self, ctx, options: dict) -> str | None:
        """Why this audit cannot run on ``ctx``'s run with ``options`` (None: it can)."""
        modality = ctx.config.data.modality
        if modality not in self.modalities:
            return f"audits {' or '.join(self.modalities)} models; this run's model reads {modality}s"
        return self.why_not_applicable(ctx, options) if self.why_not_applicable else None


_AUDITS: dict[str, AuditSpec] = {}


def register_audit(name: str, description: str, *, results: tuple[type, ...] = (),
                   why_not_applicable: Callable | None = None, modalities: tuple[str, ...] = ("text",),
                   budget: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_audit("fairness", "...", results=(FairnessResult,))`` on the audit's run function.

    ``modalities``: the kinds of model input it audits (``text``, ``image``). The returned function refuses, with
    one line, a run whose modality it does not audit, however it is called. ``budget``: its keyword options that
    bound how many examples it reads (see :meth:`AuditSpec.budget_options`).
    """

    def wrap(func: Callable) -> Callable:
        if name in _AUDITS and _AUDITS[name].run.__wrapped__ is not func:
            raise ValueError(f"audit '{name}' is already registered")

        @functools.wraps(func)
        def run(run, *args, **kwargs):
            _check_modality(name, run, modalities)
            return func(run, *args, **kwargs)

        _AUDITS[name] = AuditSpec(name, description, run, why_not_applicable, tuple(results), tuple(modalities),
                                  tuple(budget))
        return run

    return wrap


def _check_modality(name: str, run, modalities: tuple[str, ...]) -> None:
    from trustfm.errors import ConfigError

    if hasattr(run, "config"):
        config, where = run.config, run.paths.root
    else:
        from trustfm.config import load_config
        from trustfm.runs import existing_run

        paths = existing_run(run)
        config, where = load_config(paths.config), paths.root
    modality = config.data.modality
    if modality not in modalities:
        others = [n for n, spec in _AUDITS.items() if modality in spec.modalities]
        raise ConfigError(f"audit {name} audits {' or '.join(modalities)} models; {where} holds a model of "
                          f"{modality}s (audits that apply: {', '.join(others)})")


def load_builtin_audits() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def registered_audits() -> dict[str, AuditSpec]:
    """All registered audits by name, built-in ones included."""
    load_builtin_audits()
    return dict(_AUDITS)
