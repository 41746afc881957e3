"""``trustfm predict``: labels and probabilities for texts or a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich
from trustfm.fileio import write_lines_atomic


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    text: Optional[list[str]] = typer.Option(None, "--text", help="a text to classify (repeatable)"),
    data: Optional[Path] = typer.Option(None, "--data", help="file with a text column to classify"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write predictions as JSONL here"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="output-rules YAML: abstain / override labels"),
    member: Optional[list[Path]] = typer.Option(None, "--member", help="another run to average with (ensemble; repeatable)"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Predict with the run's best model. Texts longer than max_length are truncated (flagged)."""
    from trustfm.config import load_config
    from trustfm.data.prepare import load_labelled
    from trustfm.errors import ConfigError
    from trustfm.serve.predict import predict_texts
    from trustfm.runs import existing_run

    if not text and data is None:
        raise ConfigError("give --text or --data")
    texts = list(text or [])
    rows: list[int | None] = [None] * len(texts)
    if data is not None:
        config = load_config(existing_run(run_dir).config)
        part = load_labelled(data, config.data, labelled=False)
        texts += part.texts
        rows += [int(r) for r in part.rows]
    predictions = predict_texts(run_dir, texts, rules_path=rules, members=member or (), show_progress=True)
    for prediction, row in zip(predictions, rows):
        if row is not None:
            prediction["row"] = row
    if output is not None:
        write_lines_atomic(output, (json.dumps(prediction) for prediction in predictions))
        if output_format is OutputFormat.table:  # the rows went to the file: say where, not every row again
            abstained = sum(p["label"] is None for p in predictions)
            typer.echo(f"{len(predictions)} predictions written to {output}"
                       + (f" ({abstained} abstained)" if abstained else ""))
            return
    if output_format is OutputFormat.json:
        emit_json(predictions)
        return
    from rich.table import Table

    table = Table(title=f"predictions — {run_dir}")
    for column in ("#", "label", "confidence", *(["rule"] if rules else []), "text"):
        table.add_column(column)
    for i, (prediction, item) in enumerate(zip(predictions, texts), start=1):
        snippet = item if len(item) <= 60 else item[:57] + "..."
        label = prediction["label"] if prediction["label"] is not None else "(abstain)"
        rule = [prediction.get("rule") or ""] if rules else []
        table.add_row(str(i), label, f"{prediction['confidence']:.3f}", *rule, snippet)
    print_rich(table)
