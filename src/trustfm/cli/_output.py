"""Output helpers shared by the commands: JSON or Rich tables, logging to stderr."""

from __future__ import annotations

import json
import logging
from enum import Enum
from typing import Any

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


FORMAT_OPTION = typer.Option(OutputFormat.table, "--format", help="table for people, json for programs")


def error_console():
    from rich.console import Console

    return Console(stderr=True)


class RepeatCollapser(logging.Filter):
    """Lets the first of identical warnings through and counts the rest; :meth:`summary` reports the counts."""

    def __init__(self) -> None:
        super().__init__()
        self.repeats: dict[tuple[int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.levelno, record.getMessage())
        if key in self.repeats:
            self.repeats[key] += 1
            return False
        self.repeats[key] = 0
        return True

    def summary(self) -> list[str]:
        return [f"(the warning above, \"{message[:80]}\", repeated {n} more times)"
                for (_, message), n in self.repeats.items() if n]


def configure_logging() -> RepeatCollapser:
    """Log to stderr through Rich; returns the filter that collapses repeated warnings."""
    from rich.logging import RichHandler

    collapser = RepeatCollapser()
    handler = RichHandler(console=error_console(), show_path=False, show_time=False)
    handler.addFilter(collapser)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("trustfm").setLevel(logging.INFO)
    for noisy in ("transformers", "httpx", "urllib3", "matplotlib", "flwr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # torchao (imported by Transformers and Presidio's stack when installed) reports CUDA kernels a CPU cannot load,
    # and torch's pytree a deprecation meant for torchao's developers: nothing the user can act on
    for silent in ("torchao", "torch.utils._pytree"):
        logging.getLogger(silent).setLevel(logging.ERROR)
    logging.captureWarnings(True)  # Python warnings go through the same handler, so repeats collapse too
    return collapser


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str]):
    """An empty Rich table with these column headings (rows are added by the caller)."""
    from rich.table import Table

    out = Table(title=title, show_header=True)
    for column in columns:
        out.add_column(column)
    return out


def metrics_table(title: str, rows: list[tuple[str, str]]):
    out = table(title, ["metric", "value"])
    for name, value in rows:
        out.add_row(name, value)
    return out


def print_rich(renderable) -> None:
    """Print to stdout; redirected to a file or a pipe, tables keep their full width (no 80-column wrap)."""
    import sys

    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else REDIRECTED_WIDTH).print(renderable)


REDIRECTED_WIDTH = 200  # characters: rich would otherwise assume 80 and fold table cells


def fmt_interval(item, digits: int = 4) -> str:
    """``value [low, high]`` for an Interval or its dict form; 'n/a' for None or NaN."""
    if item is None:
        return "n/a"
    if not isinstance(item, dict):
        item = item.model_dump()
    value, low = item["value"], item.get("low")
    if value != value:  # NaN
        return "n/a"
    if low is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {item['high']:.{digits}f}]"


def performance_rows(result: dict) -> list[tuple[str, str]]:
    auc = result.get("roc_auc")
    return [
        ("rows", str(result["n"])),
        ("accuracy (95% CI)", fmt_interval(result["accuracy"])),
        ("macro F1 (95% CI)", fmt_interval(result["macro_f1"])),
        ("macro precision", f"{result['macro_precision']:.4f}"),
        ("macro recall", f"{result['macro_recall']:.4f}"),
        ("ROC-AUC", "n/a" if auc is None else f"{auc:.4f}"),
        ("expected calibration error", f"{result['expected_calibration_error']:.4f}"),
    ]
