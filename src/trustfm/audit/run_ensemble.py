"""``trustfm audit ensemble``: a run against the average of it and other runs (other seeds or checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trustfm.audit.registry import register_audit


def _needs_members(run_dir: Path) -> str | None:
    return "needs other runs to average with: run `trustfm audit ensemble RUN_DIR --member OTHER_RUN ...`"


def check_members(runners: Sequence, test_parts: Sequence) -> None:
    """Refuse members whose labels or test split differ from the first run's (their test rows could be training rows)."""
    from trustfm.errors import ConfigError

    first, first_test = runners[0], test_parts[0]
    for runner, test in zip(runners[1:], test_parts[1:]):
        if runner.label_names != first.label_names:
            raise ConfigError(f"ensemble member {runner.paths.root} has labels {runner.label_names}, "
                              f"not {first.label_names}")
        if test.file != first_test.file or list(test.rows) != list(first_test.rows):
            raise ConfigError(
                f"ensemble member {runner.paths.root} has a different test split from {first.paths.root}: its training "
                "rows may be the first run's test rows. Give a separate data.test file, or fix data.split.seed "
                "so runs with other seeds share one split")


@register_audit("ensemble", "ensemble of runs: accuracy, calibration and robustness against the single model",
                applies=_needs_members)
def audit_ensemble_run(
    run_dir: str | Path, *, members: Sequence[str | Path] = (), attack_texts: int = 100, show_progress: bool = False,
) -> dict[str, object]:
    from trustfm.audit.ensemble import average_proba, compare_ensemble
    from trustfm.errors import ConfigError
    from trustfm.pipeline import RunModel, prepare_run_data
    from trustfm.runs import write_json_atomic

    if not members:
        raise ConfigError("give at least one --member run to average with")
    runners = [RunModel(run_dir), *(RunModel(m) for m in members)]
    datas = [prepare_run_data(runner) for runner in runners]
    parts = [d.test if len(d.test) else d.validation for d in datas]
    check_members(runners, parts)
    first, part = runners[0], parts[0]
    config = first.config
    result = compare_ensemble(
        part.texts, datas[0].label_ids(part), first.predict_proba,
        average_proba([r.predict_proba for r in runners]), first.label_names,
        members=[str(r.paths.root) for r in runners], dataset=f"{part.file} ({len(part)} test texts)",
        attack_texts=attack_texts, bootstrap_samples=config.evaluate.bootstrap_samples,
        confidence=config.evaluate.confidence, calibration_bins=config.evaluate.calibration_bins, seed=config.seed,
    )
    write_json_atomic(first.paths.result("ensemble"), result.model_dump(mode="json"))
    return {"ensemble": result}
