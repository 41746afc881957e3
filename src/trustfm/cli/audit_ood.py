"""``trustfm audit ood``: how well the run's model tells its own data from other data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("ood")
def ood(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    ood_data: Path = typer.Option(..., "--ood-data", help="file of out-of-distribution texts"),
    ood_text_column: Optional[str] = typer.Option(None, "--ood-text-column", help="its text column (default: data.text_column)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """AUROC and FPR at 95% TPR for max-softmax, energy and Mahalanobis; saves the detector with the model."""
    from trustfm.audit.ood.plugin import audit_ood_run

    result = audit_ood_run(run_dir, ood_data=ood_data, ood_text_column=ood_text_column)["ood"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"OOD: {result.n_in} test rows vs {result.n_out} rows of {result.out_of_distribution}",
                 ["detector", "AUROC", "FPR at 95% TPR"])
    for d in result.detectors:
        rows.add_row(d.detector + (" ★" if d.detector == result.best else ""),
                     fmt_interval(d.auroc, digits=3), fmt_interval(d.fpr_at_95_tpr, digits=3))
    print_rich(rows)
