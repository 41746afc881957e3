"""``trustfm demo``: the main job on the embedded demo set and the default model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("runs/demo"), "--output-dir", "-o", help="run folder [output_dir]"),
    epochs: Optional[int] = typer.Option(None, help="[train.epochs]"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Fine-tune all-MiniLM-L6-v2 on the shipped demo reviews, evaluate, write the report."""
    from importlib import resources

    from trustfm.config import load_config
    from trustfm.pipeline import train_run
    from trustfm.report import build_report

    overrides: dict = {"output_dir": str(output_dir)}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    with resources.as_file(resources.files("trustfm.data") / "demo" / "demo.yaml") as config_path:
        config = load_config(config_path, overrides)
    paths = train_run(config, show_progress=not quiet)
    html, _ = build_report(paths.root)
    typer.echo(f"report: {html.resolve()}")
