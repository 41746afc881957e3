"""``trustfm audit RUN_DIR --all`` (also ``trustfm audit all RUN_DIR``): every audit that applies, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


@audit_app.command("all")
def audit_all(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=1, help="at most this many texts, images "
                                               "or rows per audit (each audit's own default otherwise)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Run every registered audit that applies, then write the report (audits that cannot run say why)."""
    from trustfm.audit.run_all import run_all_audits
    from trustfm.report import build_report

    summary = run_all_audits(run_dir, max_examples=max_examples,
                             show_progress=output_format is OutputFormat.table)
    html, data = build_report(run_dir)
    if output_format is OutputFormat.json:
        emit_json(summary.model_dump(mode="json"))  # the same document as results/audits.json
        return
    rows = table(f"audits — {run_dir}", ["audit", "status", "results / reason", "seconds"])
    for s in summary.audits:
        rows.add_row(s.audit, s.status, ", ".join(s.results) if s.status == "ran" else (s.reason or ""),
                     "" if s.seconds is None else f"{s.seconds:.1f}")
    print_rich(rows)
    typer.echo(f"report: {html.resolve()}")
