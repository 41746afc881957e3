"""``trustfm audit robustness``: perturbation tests with flip rates and accuracy under each change."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("robustness")
def robustness(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    max_texts: int = typer.Option(500, "--max-texts", help="test texts to perturb"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Invariance tests (the label must hold) and directional tests (negation must flip it), with 95% intervals."""
    from trustfm.audit.robustness.plugin import audit_robustness_run

    result = audit_robustness_run(run_dir, max_texts=max_texts)["robustness"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"perturbations on {result.dataset}; clean accuracy {result.clean_accuracy:.3f}",
                 ["test", "kind", "n", "flip rate", "accuracy"])
    for t in result.tests:
        rows.add_row(t.name, t.kind, str(t.n), fmt_interval(t.flip_rate, digits=3), fmt_interval(t.accuracy, digits=3))
    for name, why in result.skipped.items():
        rows.add_row(name, "", "0", f"skipped: {why}", "")
    print_rich(rows)
