"""``trustfm audit extraction``: how much of the model an attacker with an API key can copy, per defence."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("extraction")
def extraction(
    run_dir: Path = typer.Argument(..., help="run folder whose model is served"),
    attacker_texts: Path = typer.Option(..., "--attacker-texts", help="public or unlabelled texts the attacker sends"),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="their text column [data.text_column]"),
    budgets: str = typer.Option("100,300,1000", "--budgets", help="query budgets, comma-separated"),
    defences: Optional[str] = typer.Option(None, "--defences", help="full | rounded | top1 | budget, comma-separated "
                                           "[all four]; as-served for a run imported from an endpoint"),
    key_query_budget: Optional[int] = typer.Option(None, "--key-query-budget",
                                                   help="the budget defence's cap (default: the smallest budget)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Query the served model as an attacker (trustfm's service on loopback, or the endpoint a run was imported
    from), train a surrogate on the answers, report its agreement with the model."""
    from trustfm.errors import ConfigError
    from trustfm.serve.extraction import audit_extraction_run

    try:
        budget_list = [int(b) for b in budgets.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--budgets: give whole numbers separated by commas, not {budgets!r}") from None
    result = audit_extraction_run(run_dir, attacker_texts=attacker_texts, text_column=text_column,
                                  budgets=budget_list,
                                  defences=[d.strip() for d in defences.split(",") if d.strip()] if defences else None,
                                  key_query_budget=key_query_budget, show_progress=True)
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"model extraction of {run_dir} (model accuracy {result.model_accuracy:.3f})",
                 ["defence", "queries", "answered", "agreement", "surrogate accuracy", "alert"])
    for p in result.points:
        rows.add_row(p.defence, str(p.budget), str(p.answered), fmt_interval(p.agreement, digits=3),
                     fmt_interval(p.surrogate_accuracy, digits=3), _alert(result.alerts[p.defence]))
    print_rich(rows)


def _alert(fired: bool | None) -> str:
    return "not observable" if fired is None else "yes" if fired else "no"
