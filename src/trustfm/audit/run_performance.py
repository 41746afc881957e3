"""The performance audit (evaluation on the test split) as a registered audit."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.registry import register_audit


@register_audit("performance", "accuracy, F1, ROC-AUC, calibration with intervals on the test split")
def audit_performance_run(run_dir: str | Path, *, show_progress: bool = False) -> dict[str, object]:
    from trustfm.pipeline import evaluate_run

    return {"performance": evaluate_run(run_dir, show_progress=show_progress)}
