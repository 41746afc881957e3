"""Read a labelled table from CSV, TSV, JSONL, Parquet or a saved Hugging Face dataset.

Every reader returns a :class:`pandas.DataFrame` of the file's columns in file
order; row ``i`` of the frame is data row ``i + 1`` of the file (header
excluded), which is the row number used in every error message. Text that is not
valid UTF-8 is kept with its bad bytes as lone surrogates (``surrogateescape``)
so validation can report the exact rows instead of the reader failing on the
first one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from trustfm.errors import ConfigError, DataError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "hf")

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path) -> str:
    """Guess the format from the suffix, or ``hf`` for a ``datasets.save_to_disk`` folder."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf"
        if (path / "dataset_dict.json").exists():
            raise DataError(
                "this is a DatasetDict folder; point at one split's sub-folder (e.g. .../train)",
                file=str(path),
            )
        raise DataError("folder is not a saved Hugging Face dataset", file=str(path))
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format from suffix '{path.suffix}'; set data.format to one of {FORMATS}",
            file=str(path),
        )
    return fmt


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read ``path`` into a frame of object columns; empty CSV/TSV fields are null."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", file=str(path))
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown data format '{fmt}'; choose one of {FORMATS}")
    from trustfm.encryption import is_encrypted, read_decrypted

    # an encrypted file (trustfm data redact --encrypt) is decrypted in memory, never to disk
    source = io.BytesIO(read_decrypted(path)) if fmt != "hf" and is_encrypted(path) else path
    if fmt in ("csv", "tsv"):
        frame = _read_delimited(source, fmt, path)
    elif fmt == "jsonl":
        frame = _read_jsonl(source, path)
    elif fmt == "parquet":
        frame = _read_parquet(source)
    else:
        frame = _read_hf(path)
    return frame.reset_index(drop=True)


def _read_delimited(source, fmt: str, path: Path) -> pd.DataFrame:
    # TSV follows the GLUE convention: no quoting at all, so a stray quote
    # character is text, not the start of a multi-line field.
    options = (
        {"sep": "\t", "quoting": csv.QUOTE_NONE}
        if fmt == "tsv"
        else {"sep": ",", "quoting": csv.QUOTE_MINIMAL}
    )
    try:
        return pd.read_csv(
            source,
            dtype=object,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8",
            encoding_errors="surrogateescape",
            **options,
        )
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header row)", file=str(path)) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed {fmt.upper()}: {exc}", file=str(path)) from None


def _read_jsonl(source, path: Path) -> pd.DataFrame:
    records: list[dict] = []
    with (source if isinstance(source, io.BytesIO) else path.open("rb")) as handle:
        for row, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="surrogateescape").strip()
            if not line:
                raise DataError("blank line in JSONL", file=str(path), row=row)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", file=str(path), row=row) from None
            if not isinstance(record, dict):
                raise DataError("each JSONL line must be an object", file=str(path), row=row)
            records.append(record)
    if not records:
        raise DataError("file has no rows", file=str(path))
    return pd.DataFrame.from_records(records).astype(object)


def _read_parquet(source) -> pd.DataFrame:
    try:
        return pd.read_parquet(source).astype(object)
    except ImportError:
        raise ConfigError("reading Parquet needs pyarrow: pip install 'trustfm[parquet]'") from None


def _read_hf(path: Path) -> pd.DataFrame:
    try:
        import datasets
    except ImportError:
        raise ConfigError("reading a saved dataset needs datasets: pip install 'trustfm[hf]'") from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        raise DataError(
            f"this is a DatasetDict with splits {list(loaded)}; point at one split's folder",
            file=str(path),
        )
    return loaded.to_pandas().astype(object)


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str = "auto", *, encrypt_key: bytes | None = None) -> Path:
    """Write ``frame`` as csv, tsv, jsonl or parquet (by ``fmt`` or the file extension), atomically.

    With ``encrypt_key`` the file is AES-GCM encrypted (:mod:`trustfm.encryption`); ``read_table`` reads it back.

    Delimited files are written the way :func:`read_table` reads them back, so a
    cleaned copy round-trips; undecodable bytes kept as surrogates are written back as they were.
    """
    import csv
    import os

    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "tsv"):
        # TSV as read: no quoting at all (a text with a tab or newline could not have been read either)
        options = {"sep": "\t", "quoting": csv.QUOTE_NONE, "quotechar": "\x00"} if fmt == "tsv" else {"sep": ","}
        frame.to_csv(tmp, index=False, encoding="utf-8", errors="surrogateescape", **options)
    elif fmt == "jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        from trustfm.errors import ConfigError

        raise ConfigError(f"cannot write format '{fmt}' ({path}); use .csv, .tsv, .jsonl or .parquet")
    if encrypt_key is not None:
        from trustfm.encryption import write_encrypted

        plain = tmp.read_bytes()
        tmp.unlink()
        return write_encrypted(path, plain, encrypt_key)
    os.replace(tmp, path)
    return path
