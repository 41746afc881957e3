"""``trustfm demo``: the whole flow on the embedded demo set and the default model, and where to look."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("runs/demo"), "--output-dir", "-o",
                                    help="folder for the demo's two runs (baseline/, mitigated/)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs of both runs (default: the demo config's)"),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=10, help="at most this many texts or "
                                               "rows per audit (a quicker tour; default: the tour's own budgets)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train, audit everything, mitigate the planted bias, re-audit, report and gate — on the demo set."""
    from trustfm.pipeline import demo_flow

    summary = demo_flow(output_dir, epochs=epochs, max_examples=max_examples, show_progress=not quiet)
    if output_format is OutputFormat.json:
        emit_json(summary)
        return
    comparison = summary["fairness_comparison"]
    rows = table("gender gap before and after re-weighting (test split, 95% intervals)",
                 ["metric", "baseline", "mitigated", "change"])
    rows.add_row("accuracy", fmt_interval(comparison["accuracy_before"]), fmt_interval(comparison["accuracy_after"]),
                 f"{comparison['accuracy_change']:+.3f}")
    shown = [row for row in comparison["rows"] if row["slice"] == "gender"
             and row["metric"] in ("demographic_parity_difference", "tpr_gap", "fpr_gap")]
    for row in shown:
        rows.add_row(row["metric"], fmt_interval(row["before"]), fmt_interval(row["after"]), f"{row['change']:+.3f}")
    print_rich(rows)
    # the lesson of the tour in one line: a mitigation moves one gap, and may move others and accuracy too
    narrowed = [r["metric"] for r in shown if r["change"] < 0]
    widened = [f"{r['metric']} ({r['change']:+.3f})" for r in shown if r["change"] > 0]
    typer.echo(f"trade-off: re-weighting narrowed {', '.join(narrowed) or 'no gap'}"
               + (f", widened {', '.join(widened)}" if widened else "")
               + f", and moved accuracy by {comparison['accuracy_change']:+.3f}: a passing gate does not mean every "
               "gap closed; read the rows above")
    gates = table("release policy (src/trustfm/data/demo/policy.yaml)", ["run", "rule", "value", "result"])
    for name, gate in summary["gate"].items():
        for outcome in gate["outcomes"]:
            gates.add_row(name, outcome["rule"], "n/a" if outcome["observed"] is None else f"{outcome['observed']:.4f}",
                          "PASS" if outcome["passed"] else "FAIL")
    print_rich(gates)
    for name, run in summary["runs"].items():
        typer.echo(f"{name} run: {run['run_dir']}  (results/*.json, model/, run.json)")
    typer.echo(f"report: {Path(summary['runs']['baseline']['report']).resolve()}")
    typer.echo(f"report: {Path(summary['runs']['mitigated']['report']).resolve()}")
