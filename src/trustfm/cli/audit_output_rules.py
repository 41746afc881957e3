"""``trustfm audit output-rules``: what an output-rules file does to coverage and accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("output-rules")
def rules(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    rules_file: Path = typer.Option(..., "--rules", help="output-rules YAML"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Coverage, accuracy on answered texts and per-rule effect on the test split."""
    from trustfm.audit.output_rules.plugin import audit_output_rules_run

    result = audit_output_rules_run(run_dir, rules=rules_file)["output_rules"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    print_rich(f"coverage {fmt_interval(result.coverage, digits=3)}; accuracy on answered texts "
               f"{fmt_interval(result.accuracy_answered, digits=3)} (model alone, all texts: "
               f"{fmt_interval(result.accuracy_model, digits=3)})")
    rows = table(f"rules in {result.rules_file} on {result.dataset}", ["rule", "action", "fired", "model accuracy",
                                                                       "rule accuracy"])
    for r in result.rules:
        rows.add_row(r.name, r.action, str(r.fired), "" if r.model_accuracy is None else f"{r.model_accuracy:.3f}",
                     "" if r.rule_accuracy is None else f"{r.rule_accuracy:.3f}")
    print_rich(rows)
