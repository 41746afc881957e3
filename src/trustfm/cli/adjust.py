"""``trustfm adjust``: re-fit calibration and decision thresholds on production feedback, as a new run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, print_rich


@app.command()
def adjust(
    run_dir: Path = typer.Argument(..., help="the served run whose answers got feedback"),
    output_dir: Path = typer.Option(..., "-o", "--output", help="new run folder for the adjusted model"),
    log_url: Optional[str] = typer.Option(None, "--from-log", help="request-log URL (default: the run's own "
                                                                   "SQLite log)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Fit a temperature and per-class biases to the feedback labels; the adjusted model becomes a new run."""
    from trustfm.monitor.adjust import adjust_run
    from trustfm.serve.settings import ServeSettings, default_paths

    url = log_url or default_paths(run_dir, ServeSettings())[1]
    record = adjust_run(run_dir, log_url=url, output_dir=output_dir)
    if output_format is OutputFormat.json:
        emit_json(record.model_dump(mode="json"))
        return
    rows = [("temperature", f"{record.temperature:.3f}"),
            ("bias", ", ".join(f"{k} {v:+.3f}" for k, v in record.bias.items()))]
    rows += [(f"{metric} (cross-fitted)", f"{record.before[metric]:.4f} -> {record.after[metric]:.4f}")
             for metric in ("accuracy", "macro_f1", "expected_calibration_error", "log_loss")]
    print_rich(metrics_table(f"adjusted on {record.feedback_rows} feedback labels: {run_dir} -> {output_dir}", rows))
    typer.echo(f"next: trustfm report {output_dir}, then trustfm serve {output_dir}")
