"""``trustfm audit compare PARENT CHILD``: what a compression cost, metric by metric, with paired intervals."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("compare")
def compare(
    parent_dir: Path = typer.Argument(..., help="the run that was compressed"),
    child_dir: Path = typer.Argument(..., help="the run trustfm compress wrote from it"),
    probe: Optional[List[str]] = typer.Option(None, "--probe", help="identity-group probe (repeatable): "
                                              "hatecheck | jigsaw-templates | eec-style | PATH"),
    probe_data: Optional[Path] = typer.Option(None, "--probe-data", help="folder of the probe's files"),
    probe_positive: Optional[str] = typer.Option(None, "--probe-positive", help="positive label of a probe file"),
    positive_label: Optional[str] = typer.Option(None, "--positive-label",
                                                 help="model class(es) counted as positive [fairness.positive_label]"),
    ood_data: Optional[Path] = typer.Option(None, "--ood-data", help="out-of-distribution texts for the OOD delta"),
    ood_text_column: Optional[str] = typer.Option(None, "--ood-text-column", help="its text column"),
    robustness_texts: int = typer.Option(300, "--robustness-texts", help="evaluation texts perturbed (0: skip)"),
    attack_texts: int = typer.Option(60, "--attack-texts", help="evaluation texts attacked (0: skip)"),
    membership_rows: int = typer.Option(300, "--membership-rows", help="members for the loss attack (0: skip)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Both models on the same examples: every delta (child - parent) with a paired bootstrap interval, and the
    examples whose label changed; written to CHILD/results/compare.json."""
    from trustfm.compress.compare import compare_runs

    result = compare_runs(parent_dir, child_dir, probes=probe or (), probe_data=probe_data,
                          probe_positive=probe_positive, positive_label=positive_label, ood_data=ood_data,
                          ood_text_column=ood_text_column, robustness_texts=robustness_texts,
                          attack_texts=attack_texts, membership_rows=membership_rows, show_progress=True)
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"{result.method}: {child_dir} against {parent_dir} ({result.dataset}; agreement "
                 f"{result.agreement:.4f})", ["metric", "parent", "child", "delta (child - parent)", "n"])
    for d in result.deltas:
        rows.add_row(d.metric, f"{d.parent:.4f}", f"{d.child:.4f}", fmt_interval(d.delta, digits=4), str(d.n))
    print_rich(rows)
    if result.worst_group_accuracy_drop is not None:
        typer.echo(f"worst-group accuracy drop: {fmt_interval(result.worst_group_accuracy_drop, digits=4)} "
                   f"({result.worst_group_slice})")
    dis = result.disagreements
    typer.echo(f"label changed on {dis.changed} of {dis.rows} rows (child right on {dis.child_right}, parent right "
               f"on {dis.parent_right}); by class: {dis.by_class}")
    for part, why in result.not_compared.items():
        typer.echo(f"not compared: {part}: {why}")
