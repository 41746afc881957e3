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
    keep_reference_models: bool = typer.Option(False, "--keep-reference-models",
                                               help="keep the two reference runs in RUN_DIR/privacy-audit "
                                                    "(default: deleted after scoring)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Loss-threshold and reference-calibrated membership inference: AUC, TPR at low FPR, empirical epsilon."""
    from trustfm.audit.membership.plugin import audit_membership_run

    result = audit_membership_run(run_dir, max_rows=max_rows, keep_reference_models=keep_reference_models)["membership"]
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
    removed = sum(result.non_member_duplicates_removed.values())
    typer.echo(f"members: {result.members_from}; non-members: {result.non_members_from}; {removed} candidate "
               f"non-members removed as duplicates of training rows; reference models "
               f"{'kept in privacy-audit/' if result.reference_models_kept else 'deleted'} "
               f"({result.reference_models_bytes / 1e6:.0f} MB)")
