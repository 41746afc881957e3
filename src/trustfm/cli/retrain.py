"""``trustfm retrain``: a new run from a run's config plus its feedback-labelled production answers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, performance_rows, print_rich


@app.command()
def retrain(
    run_dir: Path = typer.Argument(..., help="the served run whose answers got feedback"),
    output_dir: Path = typer.Option(..., "-o", "--output", help="new run folder"),
    log_url: Optional[str] = typer.Option(None, "--from-log", help="request-log URL (default: the run's own "
                                                                   "SQLite log)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train again on the parent's data plus the feedback (written beside the new run as OUTPUT.feedback.csv);
    under DP the run's epsilon is reserved against the parent dataset's budget first."""
    from trustfm.config import load_config
    from trustfm.monitor.retrain import record_retraining, write_feedback_data
    from trustfm.pipeline import train_and_evaluate
    from trustfm.runs import existing_run, read_json
    from trustfm.serve.settings import ServeSettings, default_paths

    parent = existing_run(run_dir)
    url = log_url or default_paths(run_dir, ServeSettings())[1]
    feedback = write_feedback_data(run_dir, log_url=url,
                                   output=output_dir.parent / f"{output_dir.name}.feedback.csv")
    base = load_config(parent.config)
    config = load_config(parent.config, {"output_dir": str(output_dir), "data.extra_train": [
        *map(str, base.data.extra_train), feedback.file]})
    paths = train_and_evaluate(config, show_progress=output_format is not OutputFormat.json)
    record_retraining(paths.root, parent=run_dir, feedback=feedback)
    result = read_json(paths.result("performance"))
    if output_format is OutputFormat.json:
        emit_json({"run_dir": str(paths.root), "feedback": feedback.model_dump(mode="json"), "performance": result})
        return
    typer.echo(f"{feedback.rows} feedback rows joined to the training data ({feedback.skipped} without a kept text)")
    if feedback.evaluation_duplicates:
        typer.echo(f"warning: {feedback.evaluation_duplicates} feedback rows repeat validation or test rows of the run "
                   "and were left out (training on them would inflate the new run's evaluation)", err=True)
    print_rich(metrics_table(f"{result['split']} set — {paths.root}", performance_rows(result)))
