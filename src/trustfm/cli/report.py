"""``trustfm report``: render a run's results as one HTML file and report.json."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write report.html (self-contained, opens offline) and report.json into the run folder."""
    from trustfm.report import build_report

    html, data = build_report(run_dir)
    if output_format is OutputFormat.json:
        emit_json({"html": str(html), "json": str(data)})
    else:
        typer.echo(f"report: {html.resolve()}")
        typer.echo(f"numbers: {data.resolve()}")
