"""``trustfm audit ensemble``: a run against the average of it and other runs (other seeds or checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.ensemble.average import EnsembleResult
from trustfm.audit.registry import register_audit


def _needs_members(ctx: AuditContext, options: dict) -> str | None:
    if options.get("members"):
        return None
    return "needs other runs to average with: run `trustfm audit ensemble RUN_DIR --member OTHER_RUN ...`"


def check_members(contexts: Sequence[AuditContext], test_parts: Sequence) -> None:
    """Refuse members whose labels or test split differ from the first run's (their test rows could be training rows)."""
    from trustfm.errors import ConfigError

    first, first_test = contexts[0], test_parts[0]
    for runner, test in zip(contexts[1:], test_parts[1:]):
        if runner.label_names != first.label_names:
            raise ConfigError(f"ensemble member {runner.paths.root} has labels {runner.label_names}, "
                              f"not {first.label_names}")
        if test.file != first_test.file or list(test.rows) != list(first_test.rows):
            raise ConfigError(
                f"ensemble member {runner.paths.root} has a different test split from {first.paths.root}: its training "
                "rows may be the first run's test rows. Give a separate data.test file, or fix data.split.seed "
                "so runs with other seeds share one split")


@register_audit("ensemble", "ensemble of runs: accuracy, calibration and robustness against the single model",
                results=(EnsembleResult,), why_not_applicable=_needs_members)
def audit_ensemble_run(
    run: str | Path | AuditContext, *, members: Sequence[str | Path] = (), attack_texts: int = 100, show_progress: bool = False,
) -> dict[str, object]:
    from trustfm.audit.ensemble.average import average_proba, compare_ensemble
    from trustfm.errors import ConfigError

    if not members:
        raise ConfigError("give at least one --member run to average with")
    contexts = [as_context(run, show_progress=show_progress), *(AuditContext(m) for m in members)]
    parts = [c.eval_part for c in contexts]
    check_members(contexts, parts)
    first, part = contexts[0], parts[0]
    config = first.config
    result = compare_ensemble(
        part.texts, first.data.label_ids(part), first.predictor.predict_proba,
        average_proba([c.predictor.predict_proba for c in contexts]), first.label_names,
        members=[str(c.paths.root) for c in contexts], dataset=f"{part.file} ({len(part)} test texts)",
        attack_texts=attack_texts, calibration_bins=config.evaluate.calibration_bins, **first.bootstrap.kwargs(),
    )
    first.save("ensemble", result)
    return {"ensemble": result}
