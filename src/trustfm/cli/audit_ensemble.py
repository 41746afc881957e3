"""``trustfm audit ensemble``: the run alone against the average of it and other runs."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("ensemble")
def ensemble(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train (the single model)"),
    member: list[Path] = typer.Option(..., "--member", help="another run to average with (repeatable)"),
    attack_texts: int = typer.Option(100, "--attack-texts", help="test texts for the perturbation and attack checks"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Accuracy, calibration and robustness of the probability-averaged ensemble against the single model."""
    from trustfm.audit.ensemble.plugin import audit_ensemble_run

    result = audit_ensemble_run(run_dir, members=member, attack_texts=attack_texts)["ensemble"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"ensemble of {len(result.members)} on {result.dataset}",
                 ["model", "accuracy", "macro-F1", "log loss", "ECE", "perturbed acc.", "DeepWordBug robust acc."])
    for name, s in (("single", result.single), ("ensemble", result.ensemble)):
        rows.add_row(name, fmt_interval(s.accuracy, digits=3), fmt_interval(s.macro_f1, digits=3), f"{s.log_loss:.3f}",
                     f"{s.expected_calibration_error:.3f}", f"{s.perturbation_accuracy:.3f}",
                     fmt_interval(s.attack_robust_accuracy, digits=3))
    print_rich(rows)
