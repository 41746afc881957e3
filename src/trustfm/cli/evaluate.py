"""``trustfm evaluate``: evaluate a run's best model on its test split or another file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, performance_rows, print_rich


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    data: Optional[Path] = typer.Option(None, "--data", help="labelled file to evaluate on (default: test split)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Accuracy, F1, ROC-AUC, calibration and the confusion matrix, with intervals."""
    from trustfm.audit.performance.plugin import evaluate_run

    result = evaluate_run(run_dir, data_path=data, show_progress=True).model_dump(mode="json")
    if output_format is OutputFormat.json:
        emit_json(result)
        return
    print_rich(metrics_table(f"{result['split']} — {run_dir}", performance_rows(result)))
    from rich.table import Table

    per_class = Table(title="per class")
    for column in ("label", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="right" if column != "label" else "left")
    for row in result["per_class"]:
        per_class.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    print_rich(per_class)
