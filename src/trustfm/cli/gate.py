"""``trustfm gate``: check a run's audit numbers against a YAML policy; exit 0 only if all pass."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table

EXIT_CHECK_FAILED = 4


@app.command()
def gate(
    run_dir: Path = typer.Argument(..., help="run folder with audit results"),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="YAML policy of thresholds"),
    list_metrics: bool = typer.Option(False, "--list", help="print every metric name a policy can use"),
    not_applicable: Optional[str] = typer.Option(None, "--not-applicable", help="pass or fail: what a rule counts as "
                                                 "when this run's data cannot judge it [default: the policy's "
                                                 "not_applicable, else pass]"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Each rule with its value and PASS/FAIL. Exit 0: all pass; 4: a rule failed; 2: bad policy."""
    from trustfm.errors import ConfigError
    from trustfm.report.policy import gate_run, run_metrics

    if list_metrics:
        metrics = run_metrics(run_dir)
        if output_format is OutputFormat.json:
            emit_json(metrics)
        else:
            for name, value in sorted(metrics.items()):
                typer.echo(f"{name} = {value:.6g}")
        return
    if policy is None:
        raise ConfigError("give --policy FILE (or --list to see the metric names)")
    if not_applicable not in (None, "pass", "fail"):
        raise ConfigError(f"--not-applicable must be pass or fail, not {not_applicable!r}")
    result = gate_run(run_dir, policy, not_applicable=not_applicable)
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
    else:
        rows = table(f"policy {result.policy} — {run_dir}", ["rule", "value", "result"])
        for o in result.outcomes:
            verdict = "[green]PASS[/]" if o.passed else "[bold red]FAIL[/]"
            if not o.applicable:
                verdict = f"[yellow]NOT APPLICABLE[/] ({'fails' if not o.passed else 'counts as a pass'})"
            rows.add_row(o.rule, "n/a" if o.observed is None else f"{o.observed:.4f}", verdict)
        print_rich(rows)
        for o in result.outcomes:
            if not o.applicable:
                typer.echo(f"not applicable: {o.rule}: {o.reason}", err=True)
        for warning in result.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo("PASS" if result.passed else "FAIL")
    if (run_dir / "report.json").is_file():
        typer.echo(f"note: the run's report was signed before this verdict: run `trustfm report {run_dir}` to sign it "
                   "(verify reports an unsigned results/gate.json, and serve refuses it)", err=True)
    if not result.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)
