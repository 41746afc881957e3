"""``trustfm audit privacy-canaries``: the one-run canary audit, its epsilon lower bound beside the accounted one."""

from __future__ import annotations

from pathlib import Path

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


@audit_app.command("privacy-canaries")
def privacy_canaries(
    run_dir: Path = typer.Argument(..., help="run folder trained with privacy.audit.canaries"),
    confidence: float = typer.Option(0.95, "--confidence", help="confidence of the epsilon lower bound, in (0, 1)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Score the run's canaries, guess which were trained on, reveal the sealed draws, bound epsilon from below.

    Exit 4 when the bound refutes the run's DP claim."""
    from trustfm.audit.canaries.plugin import NAME, audit_privacy_canaries_run

    result = audit_privacy_canaries_run(run_dir, confidence=confidence)[NAME]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
    else:
        accounted = "not private" if result.accounted_epsilon is None else f"{result.accounted_epsilon:.3f}"
        rows = table(f"canary audit at {result.confidence:.0%} confidence, delta {result.delta:.1e}; "
                     f"accounted epsilon {accounted}",
                     ["canaries", "count (trained on)", "AUC", "right / guessed", "epsilon ≥"])
        for a in result.audits:
            rows.add_row(a.canary_kind, f"{a.canaries} ({a.included})", f"{a.auc:.3f}", f"{a.correct} / {a.guesses}",
                         f"{a.epsilon_lower_bound:.3f}")
        print_rich(rows)
        typer.echo({"stands": f"the DP claim stands: epsilon ≥ {result.epsilon_lower_bound:.3f} does not exceed "
                              f"the accounted {accounted}",
                    "refuted": f"the DP claim is REFUTED: epsilon ≥ {result.epsilon_lower_bound:.3f} exceeds the "
                               f"accounted {accounted}",
                    "none": f"no DP claim to test (trained without DP): epsilon ≥ "
                            f"{result.epsilon_lower_bound:.3f}"}[result.claim])
    if result.claim == "refuted":
        raise typer.Exit(4)
