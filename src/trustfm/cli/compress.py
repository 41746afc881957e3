"""``trustfm compress``: a smaller or faster copy of a run's model, as a new run folder linked to its parent."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, print_rich


class Method(str, Enum):
    onnx = "onnx"
    onnx_int8 = "onnx-int8"
    torch_int8 = "torch-int8"
    distill = "distill"
    prune = "prune"


class Calibration(str, Enum):
    dynamic = "dynamic"
    static = "static"


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train (the parent)"),
    method: Method = typer.Option(..., "--method", help="onnx | onnx-int8 | torch-int8 | distill | prune"),
    output_dir: Path = typer.Option(..., "-o", "--output", help="new run folder for the compressed model"),
    calibration: Calibration = typer.Option(Calibration.dynamic, "--calibration",
                                            help="onnx-int8: dynamic activation scales, or static from training texts"),
    calibration_rows: int = typer.Option(256, "--calibration-rows", help="onnx-int8 static: texts for the ranges"),
    layers: Optional[int] = typer.Option(None, "--layers", help="distill: student layers (default: half)"),
    fraction: float = typer.Option(0.3, "--fraction", help="prune: share of heads and FFN units removed per layer"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="student training epochs (distill 3, prune 1)"),
    temperature: float = typer.Option(2.0, "--temperature", help="distill/prune: soft-label temperature"),
    alpha: float = typer.Option(0.5, "--alpha", help="distill/prune: weight of the soft labels (rest: gold labels)"),
    unlabelled: Optional[Path] = typer.Option(None, "--unlabelled", help="distill/prune: extra texts for the teacher to label"),
    public_texts_only: bool = typer.Option(False, "--public-texts-only",
                                           help="train the student on --unlabelled only (required for a DP parent)"),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement",
                                                  help="refuse a child keeping fewer parent labels (0-1)"),
    max_proba_diff: Optional[float] = typer.Option(None, "--max-proba-diff",
                                                   help="refuse a child whose probabilities move more than this"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Compress the run's model; the child is checked against the parent before it is written, then evaluated."""
    from pydantic import ValidationError

    from trustfm.compress.run import SPEED_ROUNDS, CompressionSettings, compress_run
    from trustfm.errors import ConfigError

    try:
        settings = CompressionSettings(
            method=method.value, calibration=calibration.value, calibration_rows=calibration_rows, layers=layers,
            fraction=fraction, epochs=epochs, temperature=temperature, alpha=alpha,
            unlabelled=None if unlabelled is None else str(unlabelled), public_texts_only=public_texts_only,
            min_agreement=min_agreement, max_proba_diff=max_proba_diff)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    record = compress_run(run_dir, settings=settings, output_dir=output_dir, show_progress=True)
    from trustfm.monitor.reference import build_reference

    build_reference(output_dir)  # the child's own outputs are what its production traffic is compared with
    if output_format is OutputFormat.json:
        emit_json(record.model_dump(mode="json"))
        return
    fid = record.fidelity
    print_rich(metrics_table(f"{record.method}: {run_dir} -> {output_dir}", [
        ("weights (MB)", f"{record.size_bytes / 1e6:.1f} (parent {record.parent_size_bytes / 1e6:.1f})"),
        (f"agreement with parent ({fid.rows} {fid.split} rows)", f"{fid.agreement:.4f}"),
        ("largest probability change", f"{fid.max_proba_diff:.3g}"),
        ("alone vs in a batch: largest probability change", f"{fid.batch_max_proba_diff:.2g}"),
        (f"speed vs parent (median of {SPEED_ROUNDS} alternated rounds, range)",
         f"{fid.speed_ratio:.2f}x ({fid.speed_ratio_range[0]:.2f}-{fid.speed_ratio_range[1]:.2f})"),
        ("seconds", f"{record.seconds:.1f}"),
    ]))
    if fid.speed_ratio < 1:
        typer.echo(f"warning: the {record.method} model answers {1 / fid.speed_ratio:.2f}x slower than its parent on "
                   f"this machine ({fid.rows} {fid.split} rows): it saves size, not time", err=True)
    typer.echo(f"next: trustfm audit compare {run_dir} {output_dir}")
