"""``trustfm audit membership``: membership-inference attacks, and the accountant's epsilon beside the attack's."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table


@audit_app.command("membership")
def membership(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    max_rows: int = typer.Option(500, "--max-rows", help="training rows (and as many unseen rows) to attack"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Loss-threshold and reference-calibrated membership inference: AUC, TPR at low FPR, empirical epsilon."""
    from trustfm.audit.membership.plugin import audit_membership_run

    result = audit_membership_run(run_dir, max_rows=max_rows)["membership"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    accounted = "not private" if result.accounted_epsilon is None else f"{result.accounted_epsilon:.3f}"
    rows = table(f"membership inference: {result.members} members vs {result.non_members} non-members; "
                 f"accounted epsilon {accounted}", ["attack", "AUC", "TPR@1% FPR", "TPR@0.1% FPR", "empirical ε ≥"])
    for a in result.attacks:
        rows.add_row(a.attack, fmt_interval(a.auc, digits=3), fmt_interval(a.tpr_at_1pct_fpr, digits=3),
                     fmt_interval(a.tpr_at_01pct_fpr, digits=3), f"{a.empirical_epsilon_lower_bound:.3f}")
    print_rich(rows)
