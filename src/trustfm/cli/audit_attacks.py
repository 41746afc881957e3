"""``trustfm audit attacks``: adversarial attacks with success rate, robust accuracy, queries and examples."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("attacks")
def attack(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    max_texts: int = typer.Option(200, "--max-texts", help="test texts to attack"),
    method: Optional[list[str]] = typer.Option(None, "--method", help="deepwordbug and/or hotflip (default: both)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """DeepWordBug (black-box character edits) and HotFlip (white-box word swaps), batched across texts."""
    from trustfm.audit.attacks.plugin import audit_attacks_run

    suite = audit_attacks_run(run_dir, max_texts=max_texts, attacks=tuple(method or ("deepwordbug", "hotflip")))["attacks"]
    if output_format is OutputFormat.json:
        emit_json(suite.model_dump(mode="json"))
        return
    rows = table(f"attacks on {suite.dataset}", ["attack", "kind", "attacked", "success rate", "robust accuracy",
                                                 "queries/text", "words changed", "seconds"])
    for a in suite.attacks:
        rows.add_row(a.attack, a.kind, str(a.attacked), fmt_interval(a.success_rate, digits=3),
                     fmt_interval(a.robust_accuracy, digits=3), f"{a.mean_queries:.1f}",
                     f"{a.mean_words_perturbed:.1%}", f"{a.seconds:.1f}")
    print_rich(rows)
    from rich.markup import escape

    for a in suite.attacks:
        for e in a.examples[:2]:
            print_rich(f"[bold]{a.attack}[/] {escape(e.original_label)}→{escape(e.adversarial_label)}: {escape(e.adversarial)}")
