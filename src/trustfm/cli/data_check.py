"""``trustfm data check``: every problem in a dataset, counted, before any training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import data_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich


@data_app.command("check")
def check(
    data: Path = typer.Argument(..., help="data file (csv, tsv, jsonl, parquet) or saved dataset folder"),
    config: Optional[Path] = typer.Option(None, "--config", help="run config whose data section applies"),
    data_format: Optional[str] = typer.Option(None, help="[data.format]"),
    text_column: Optional[str] = typer.Option(None, help="[data.text_column]"),
    label_column: Optional[str] = typer.Option(None, help="[data.label_column]"),
    id_column: Optional[str] = typer.Option(None, help="[data.id_column]"),
    group_column: Optional[list[str]] = typer.Option(None, help="[data.group_columns]"),
    max_length: Optional[int] = typer.Option(None, help="[data.max_length]"),
    model: Optional[str] = typer.Option(None, help="tokenizer for the length check [model.name_or_path]"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Count rows, labels and problems. Exits 3 if a problem's policy is 'error'."""
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.config.schema import ProblemPolicies
    from trustfm.data.batching import encode_texts
    from trustfm.data.io import read_table
    from trustfm.data.validate import validate_table
    from trustfm.errors import DataError

    flags = dict(locals())
    cfg = load_config(config, overrides_from_flags(flags, set_))
    # collect every problem (drop all), then judge against the configured policies
    collect = ProblemPolicies(**{k: "drop" for k in ProblemPolicies.model_fields})
    frame = read_table(data, cfg.data.format)
    part = validate_table(
        frame,
        file=str(data),
        text_column=cfg.data.text_column,
        label_column=cfg.data.label_column,
        id_column=cfg.data.id_column,
        group_columns=cfg.data.group_columns,
        policies=collect,
    )
    reasons = Counter(r.reason for r in part.rejected)
    kinds = Counter(r.kind for r in part.rejected)
    first_rows: dict[str, list[int]] = {}
    for r in part.rejected:
        rows = first_rows.setdefault(r.kind, [])
        if len(rows) < 5:
            rows.append(r.row)

    from transformers import AutoTokenizer

    from trustfm.models.loading import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(cfg.model.name_or_path), local_files_only=True)
    encoded = encode_texts(tokenizer, part.texts, cfg.data.max_length)
    lengths = encoded.lengths
    too_long = int(encoded.truncated.sum())
    if too_long:
        kinds["too_long"] = too_long
        first_rows["too_long"] = [int(part.rows[i]) for i in encoded.truncated.nonzero()[0][:5]]
    report = {
        "file": str(data),
        "rows": part.rows_in,
        "usable_rows": len(part) - (too_long if cfg.data.on_problem.too_long == "drop" else 0),
        "columns": [str(c) for c in frame.columns],
        "labels": dict(Counter(part.labels).most_common()),
        "groups": {c: dict(Counter(v).most_common()) for c, v in part.groups.items()},
        "problems": dict(kinds),
        "problem_reasons": dict(reasons),
        "first_rows": first_rows,
        "policies": cfg.data.on_problem.model_dump(),
        "tokens": {
            "max_length": cfg.data.max_length,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "p95": float(_quantile(lengths, 0.95)),
            "max": int(lengths.max()) if len(lengths) else 0,
            "truncated": too_long,
        },
    }
    blocking = {k: n for k, n in kinds.items() if getattr(cfg.data.on_problem, k) == "error"}
    report["blocking"] = blocking
    if output_format is OutputFormat.json:
        emit_json(report)
    else:
        _print(report)
    if blocking:
        detail = ", ".join(f"{n} {k} (first at row {first_rows[k][0]})" for k, n in blocking.items())
        raise DataError(f"problems whose policy is 'error': {detail}", file=str(data))



def _quantile(values, q: float) -> float:
    import numpy as np

    return float(np.quantile(values, q)) if len(values) else 0.0


def _print(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"data check — {report['file']}")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("rows", str(report["rows"]))
    table.add_row("usable rows", str(report["usable_rows"]))
    for label, n in report["labels"].items():
        table.add_row(f"label {label}", str(n))
    for column, counts in report["groups"].items():
        for value, n in counts.items():
            table.add_row(f"{column} = {value}", str(n))
    for kind, n in report["problems"].items():
        policy = report["policies"][kind]
        table.add_row(f"problem: {kind} ({policy})", f"{n} (rows {', '.join(map(str, report['first_rows'][kind]))}…)")
    tokens = report["tokens"]
    table.add_row("tokens mean / p95 / max", f"{tokens['mean']:.1f} / {tokens['p95']:.0f} / {tokens['max']}")
    print_rich(table)
