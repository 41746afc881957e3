"""Read a labelled table from CSV, TSV, JSON lines, a JSON array, Parquet or a saved Hugging Face dataset.

The reader looks at a file's bytes, not only its name: a table under the wrong
suffix is read by what it holds and :class:`TableSource` says so; a file that is
no table (binary data, an HTML page, a zip, gzip-less archive or an Excel
workbook) is refused with one line naming the file. Gzip-compressed text is
read through. Encodings: UTF-8 (with or without a byte-order mark) and UTF-16 /
UTF-32 (with a byte-order mark, or UTF-16 recognised by its zero bytes). Text
that is not valid UTF-8 is kept with its bad bytes as lone surrogates
(``surrogateescape``) so validation can name the exact rows.

Every reader returns a :class:`pandas.DataFrame` of object columns; row ``i`` of
the frame is data row ``i + 1`` of the file (header excluded), the row number
used in every error message. A blank line in the middle of a file is a row (so
the numbers stay right; validation reports it as an empty text); blank lines at
the end are ignored. With ``columns`` given, only those columns are read (memory
grows with the columns read, not with the file's width) and a header that
differs only in case or stray spaces is matched, and said.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

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
SNIFF_BYTES = 1 << 16  # how much of a file decides its format, encoding and delimiter
_DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_NOT_TABLES = (  # magic bytes -> what the file is, and what to do instead
    (b"\xd0\xcf\x11\xe0", "an old Excel/Office document (.xls)", "save it as CSV"),
    (b"%PDF", "a PDF document", "export the table as CSV"),
    (b"\x89PNG", "a PNG image", "give a table of texts and labels"),
    (b"\xff\xd8\xff", "a JPEG image", "give a table of texts and labels"),
    (b"BZh", "a bzip2 archive", "decompress it first"),
    (b"\xfd7zXZ", "an xz archive", "decompress it first"),
    (b"7z\xbc\xaf", "a 7-zip archive", "extract it first"),
    (b"SQLite format 3", "an SQLite database", "export the table as CSV"),
)


@dataclass
class TableSource:
    """How a file was read: its format, encoding, delimiter and anything the reader had to decide.

    ``notes`` are one-line sentences for the user (for example "named .parquet but
    holds CSV text: read as CSV"); they never contain the file's contents.
    """

    path: str
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    compression: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line: ``csv, utf-8, delimiter ';', gzip``."""
        parts = [self.format]
        if self.encoding:
            parts.append(self.encoding)
        if self.delimiter:
            parts.append(f"delimiter {_DELIMITERS.get(self.delimiter, repr(self.delimiter))}")
        if self.compression:
            parts.append(f"{self.compression}-compressed")
        return ", ".join(parts)


def detect_format(path: Path) -> str:
    """The format the suffix names, or ``hf`` for a ``datasets.save_to_disk`` folder."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf"
        if (path / "dataset_dict.json").exists():
            raise DataError(
                "this is a DatasetDict folder; point at one split's sub-folder (e.g. .../train)",
                file=str(path),
            )
        raise DataError("is a folder, not a data file or a saved Hugging Face dataset", file=str(path))
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format from suffix '{path.suffix}'; set data.format to one of {FORMATS}",
            file=str(path),
        )
    return fmt


def read_table(path: str | Path, fmt: str = "auto", *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read ``path`` into a frame of object columns; empty CSV/TSV fields are null. See :func:`read_table_source`."""
    return read_table_source(path, fmt, columns=columns)[0]


def read_table_source(
    path: str | Path, fmt: str = "auto", *, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, TableSource]:
    """Read ``path`` and say how it was read.

    ``fmt`` ``auto`` trusts the content over the suffix (and notes a mismatch);
    a named format that the content contradicts is an error. ``columns`` (the
    configured names) limits the read to those columns, renamed to exactly
    these names; a missing or ambiguous one is a :class:`DataError`.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise DataError("file does not exist", file=name)
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"unknown data format '{fmt}'; choose one of {FORMATS}")
    if path.is_dir() or fmt == "hf":
        if not path.is_dir():
            raise DataError("data.format is hf but this is a file, not a saved dataset folder", file=name)
        detect_format(path)  # a folder that is no dataset gets its own message
        source = TableSource(name, "hf")
        return _select(_read_hf(path), columns, source), source
    if not path.is_file():
        raise DataError("is not a regular file", file=name)
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=name) from None

    from trustfm.encryption import HEADER, read_decrypted

    blob: bytes | None = None  # the whole content, when it had to be decoded in memory
    compression = None
    if head.startswith(HEADER):
        # an encrypted file (trustfm data redact --encrypt) is decrypted in memory, never to disk
        blob = read_decrypted(path)
        head = blob[:SNIFF_BYTES]
    if head.startswith(b"\x1f\x8b"):
        try:
            blob = gzip.decompress(blob if blob is not None else path.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"gzip-compressed but cannot be decompressed ({exc})", file=name) from None
        head, compression = blob[:SNIFF_BYTES], "gzip"

    content = _content_format(head, name)
    suffix_format = _SUFFIXES.get(path.suffix.lower())
    source = TableSource(name, content, compression=compression)
    if fmt != "auto":
        if content == "parquet" and fmt != "parquet" or fmt == "parquet" and content != "parquet":
            held = "Parquet" if content == "parquet" else "text"
            raise DataError(f"data.format is {fmt} but the file holds {held} (set data.format: auto)", file=name)
        content = source.format = fmt
    elif suffix_format is not None and not _compatible(suffix_format, content):
        shown = {"jsonl": "JSON", "csv": "delimited text", "parquet": "Parquet"}[content]
        source.notes.append(f"named {path.suffix} but holds {shown}: read by its content")

    if content == "parquet":
        return _read_parquet(io.BytesIO(blob) if blob is not None else path, name, columns), source

    encoding, text = _decode(head, blob, source)
    if content == "jsonl":
        if text is None and blob is not None:
            text = blob.decode("utf-8", "surrogateescape")
        return _read_json(text if text is not None else path, source, columns), source
    delimiter = _sniff_delimiter(head.decode(encoding if encoding != "utf-8-sig" else "utf-8", "replace")
                                 if text is None else text[:SNIFF_BYTES], suffix_format, source, columns)
    tsv = suffix_format == "tsv" and delimiter == "\t"
    if tsv:
        source.format = "tsv"
    frame = _read_delimited(text if text is not None else (io.BytesIO(blob) if blob is not None else path),
                            source, delimiter=delimiter, tsv=tsv,
                            encoding=encoding, columns=columns)
    return frame, source


def _compatible(suffix_format: str, content: str) -> bool:
    return suffix_format == content or {suffix_format, content} <= {"csv", "tsv"}


def _content_format(head: bytes, name: str) -> str:
    """``parquet``, ``jsonl`` (JSON lines or an array) or ``csv`` (any delimited text); refuses what is no table."""
    if not head.strip():
        raise DataError("file is empty", file=name)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        # an .xlsx is a zip whose first entries are [Content_Types].xml and xl/...
        workbook = b"[Content_Types].xml" in head or b"xl/" in head
        what = "an Excel workbook (.xlsx)" if workbook else "a zip archive"
        advice = "save it as CSV" if "Excel" in what else "extract the table from it first"
        raise DataError(f"is {what}, not a table: {advice}", file=name)
    for magic, what, advice in _NOT_TABLES:
        if head.startswith(magic):
            raise DataError(f"is {what}, not a table: {advice}", file=name)
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        start.startswith(b"<") and b"<html" in head[:2048].lower()
    ):
        raise DataError("is an HTML page, not a table (was a web page saved instead of the raw file?)", file=name)
    if start.startswith(b"<?xml"):
        raise DataError("is an XML document, not a table", file=name)
    if any(head.startswith(bom) for bom, _ in _BOMS) or _utf16_without_bom(head):
        text_start = _decode_head(head).lstrip("\ufeff \t\r\n")
    else:
        text_start = start.decode("utf-8", "replace")
    if text_start.startswith(("{", "[")):
        return "jsonl"
    return "csv"


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le``/``-be`` when zero bytes sit at every other position (ASCII text in UTF-16), else None."""
    sample = head[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def _decode_head(head: bytes) -> str:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head.decode(encoding, "replace")
    return head.decode(_utf16_without_bom(head) or "utf-8", "replace")


def _looks_binary(head: bytes) -> bool:
    """More than 1 in 10 characters undecodable as UTF-8 or control characters: not a text file.

    Text in a legacy encoding (Latin-1, cp1252) stays well below that; its bad
    bytes are reported by row in validation.
    """
    text = head.decode("utf-8", "replace")
    if not text:
        return False
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\r\n"))
    return odd > 0.1 * len(text)


def _decode(head: bytes, blob: bytes | None, source: TableSource) -> tuple[str, str | None]:
    """The encoding, and the decoded text where it had to be decoded in memory (UTF-16/32) else None."""
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), None)
    guessed = None if encoding else _utf16_without_bom(head)
    if encoding in (None, "utf-8-sig") and guessed is None:
        if _looks_binary(head):
            raise DataError("holds binary data, not text", file=source.path)
        source.encoding = encoding or "utf-8"
        if encoding:
            source.notes.append("UTF-8 with a byte-order mark")
        return source.encoding, None
    encoding = encoding or guessed
    raw = blob if blob is not None else Path(source.path).read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid {encoding.upper()} at byte {exc.start}", file=source.path) from None
    source.encoding = encoding
    source.notes.append(f"{encoding.upper()} text" + (" (no byte-order mark; recognised by its zero bytes)"
                                                     if guessed else ""))
    return encoding, text.lstrip("\ufeff")


def _sniff_delimiter(head_text: str, suffix_format: str | None, source: TableSource,
                     columns: Sequence[str] | None = None) -> str:
    """The delimiter whose header holds the configured columns and that splits the first lines alike.

    Ranked by: how many configured columns the header then names, how many of
    the first 50 lines have the header's field count, and the suffix's own
    delimiter first on a tie. A file of one column gets the suffix's delimiter.
    """
    default = "\t" if suffix_format == "tsv" else ","
    lines = head_text.splitlines()
    if len(head_text) >= SNIFF_BYTES - 4 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut at the sniff boundary
    lines = [line for line in lines if line.strip()][:50]
    wanted = {c.strip().casefold() for c in columns or ()}
    best, best_score = default, (0, 0, 0)
    for delimiter in _DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delimiter)) if lines else []
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        named = len(wanted & {h.strip().casefold() for h in rows[0]})
        consistent = sum(1 for r in rows if len(r) == len(rows[0]))
        score = (named, consistent, 1 if delimiter == default else 0)
        if score > best_score:
            best, best_score = delimiter, score
    if best != default:
        source.notes.append(
            f"fields are separated by {_DELIMITERS[best]}s, not {_DELIMITERS[default]}s: read with the {_DELIMITERS[best]}"
        )
    source.delimiter = best
    return best


def _header_cells(source_obj, *, delimiter: str, tsv: bool, encoding: str, name: str) -> list[str]:
    """The header row as the file spells it."""
    if isinstance(source_obj, str):
        first = source_obj
    elif isinstance(source_obj, io.BytesIO):
        first = source_obj.getvalue()[: SNIFF_BYTES * 4].decode("utf-8-sig" if encoding == "utf-8-sig" else "utf-8",
                                                                 "surrogateescape")
    else:
        with open(source_obj, "rb") as handle:
            first = handle.read(SNIFF_BYTES * 4).decode("utf-8-sig" if encoding == "utf-8-sig" else "utf-8",
                                                        "surrogateescape")
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    try:
        return next(csv.reader(io.StringIO(first, newline=""), delimiter=delimiter, quoting=quoting), [])
    except csv.Error as exc:
        raise DataError(f"the header line cannot be parsed ({_short(exc)})", file=name) from None


def _match_columns(header: Sequence[object], wanted: Sequence[str], source: TableSource) -> dict[str, int]:
    """Configured name -> header position. Exact match first; else the one header equal up to case and spaces.

    A duplicate name that a configured column would match, or two headers equal
    up to case and spaces, is ambiguous: a :class:`DataError` naming the column.
    """
    names = ["" if h is None else str(h) for h in header]
    found: dict[str, int] = {}
    for column in dict.fromkeys(wanted):
        exact = [i for i, h in enumerate(names) if h == column]
        loose = [i for i, h in enumerate(names) if h.strip().casefold() == column.strip().casefold()]
        hits = exact or loose
        if len(hits) > 1:
            where = ", ".join(str(i + 1) for i in hits)
            raise DataError(f"the header names this column more than once (fields {where}); rename all but one",
                            file=source.path, column=column)
        if not hits:
            raise DataError(f"required column is missing ({describe_header(names)})", file=source.path,
                            column=column)
        if not exact:
            source.notes.append(f"column {names[hits[0]]!r} read as {column!r} (case or spaces differ)")
        found[column] = hits[0]
    return found


# at most three words of word characters, no run of three digits (a phone or card number), up to 32 characters
_PLAIN_NAME = re.compile(r"^(?=.{1,32}$)(?!.*\d{3})\s*[\w.\-/()#:]+(?: [\w.\-/()#:]+){0,2}\s*$")


def describe_header(names: Sequence[str]) -> str:
    """The header for an error message: names that look like column names, others only by position.

    A file without a header row has data where the names belong, and data may
    be personal: a long or unusual "name" is shown as ``field N``, never as text.
    """
    shown = [repr(n) if _PLAIN_NAME.match(n) else f"field {i + 1}" for i, n in enumerate(names[:20])]
    more = f", … ({len(names)} in all)" if len(names) > 20 else ""
    hidden = sum(1 for n in names if not _PLAIN_NAME.match(n))
    hint = "; a header that looks like data: does the file have a header row?" if hidden else ""
    return f"columns present: {', '.join(shown)}{more}{hint}"


def _check_header(header: Sequence[object], source: TableSource) -> None:
    """With every column read: duplicate names are an error; unnamed columns are noted."""
    names = ["" if h is None else str(h) for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name.strip() and name in seen:
            raise DataError(f"the header names this column twice (fields {seen[name] + 1} and {i + 1}); rename one",
                            file=source.path, column=name)
        seen.setdefault(name, i)
    unnamed = [str(i + 1) for i, n in enumerate(names) if not n.strip()]
    if unnamed:
        source.notes.append(f"field {', '.join(unnamed)} of the header has no name")


def _read_delimited(source_obj, source: TableSource, *, delimiter: str, tsv: bool, encoding: str,
                    columns: Sequence[str] | None) -> pd.DataFrame:
    # TSV follows the GLUE convention: no quoting at all, so a stray quote
    # character is text, not the start of a multi-line field.
    options = {"sep": delimiter, "quoting": csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL}
    header = _header_cells(source_obj, delimiter=delimiter, tsv=tsv, encoding=encoding, name=source.path)
    if not any(str(h).strip() for h in header):
        raise DataError("the first line (the header) is empty", file=source.path)
    if columns is None:
        _check_header(header, source)
        usecols, names = None, None
    else:
        positions = _match_columns(header, columns, source)
        usecols, names = sorted(positions.values()), {i: c for c, i in positions.items()}
    reader_input = io.StringIO(source_obj) if isinstance(source_obj, str) else source_obj
    try:
        frame = pd.read_csv(
            reader_input,
            dtype=object,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            usecols=usecols,
            encoding=None if isinstance(source_obj, str) else encoding,
            encoding_errors="surrogateescape",
            **options,
        )
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header row)", file=source.path) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed {'TSV' if tsv else 'CSV'}: {_short(exc)}", file=source.path) from None
    except (ValueError, UnicodeError) as exc:
        raise DataError(f"cannot be read as delimited text ({_short(exc)})", file=source.path) from None
    if names is not None:
        # usecols keeps file order; name the columns by position as configured
        frame.columns = [names[i] for i in usecols]
        # with usecols pandas ignores fields beyond the header: data that would be lost without a word
        _check_field_counts(source_obj, source, delimiter=delimiter, tsv=tsv, encoding=encoding,
                            expected=len(header))
    return _drop_trailing_blank(frame, source)


def _check_field_counts(source_obj, source: TableSource, *, delimiter: str, tsv: bool, encoding: str,
                        expected: int) -> None:
    """A row with more fields than the header is an error naming the row (one streaming pass, C speed)."""
    if isinstance(source_obj, str):
        handle = io.StringIO(source_obj, newline="")
    elif isinstance(source_obj, io.BytesIO):
        handle = io.TextIOWrapper(io.BytesIO(source_obj.getvalue()), encoding=encoding, errors="surrogateescape",
                                  newline="")
    else:
        handle = open(source_obj, encoding=encoding, errors="surrogateescape", newline="")
    with handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        try:
            next(reader, None)
            for row, fields in enumerate(reader, start=1):
                if len(fields) > expected:
                    raise DataError(f"has {len(fields)} fields where the header has {expected} (a stray "
                                    f"{_DELIMITERS.get(delimiter, 'delimiter')} or an unquoted text?)",
                                    file=source.path, row=row)
        except csv.Error as exc:
            raise DataError(f"malformed {'TSV' if tsv else 'CSV'}: {_short(exc)}", file=source.path) from None


def _drop_trailing_blank(frame: pd.DataFrame, source: TableSource) -> pd.DataFrame:
    """Blank lines after the last row are no rows; a table with only a header is an error."""
    if len(frame):
        filled = frame.notna().any(axis=1).to_numpy()
        last = len(filled) - 1 - int(filled[::-1].argmax()) if filled.any() else -1
        if last < len(frame) - 1:
            if last >= 0:
                source.notes.append(f"{len(frame) - 1 - last} blank line(s) at the end ignored")
            frame = frame.iloc[: last + 1]
    if len(frame) == 0:
        raise DataError("has a header but no data rows", file=source.path)
    return frame.reset_index(drop=True)


def _read_json(source_obj, source: TableSource, columns: Sequence[str] | None) -> pd.DataFrame:
    """JSON lines (one object per line), or one JSON array of objects."""
    if isinstance(source_obj, Path):
        text = source_obj.read_bytes().decode("utf-8", "surrogateescape")
    else:
        text = source_obj
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        source.format = "json"
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg}, line {exc.lineno})", file=source.path) from None
        if not isinstance(records, list):
            raise DataError("a JSON file must hold one array of objects, or one object per line", file=source.path)
        source.notes.append("one JSON array (not JSON lines): each element is a row")
        numbered = list(enumerate(records, start=1))
    else:
        source.format = "jsonl"
        numbered = []
        for row, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                numbered.append((row, {}))  # a blank line keeps its row number; validation reports it
                continue
            try:
                numbered.append((row, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", file=source.path, row=row) from None
    kept: list[dict] = []
    key_map: dict[str, str] = {}
    for row, record in numbered:
        if not isinstance(record, dict):
            raise DataError(f"each row must be a JSON object, not {_json_type(record)}", file=source.path, row=row)
        if columns is None:
            kept.append(record)
            continue
        picked = {}
        for key, value in record.items():
            column = key_map.get(key)
            if column is None and key not in key_map:
                column = next((c for c in columns if c == key), None) or next(
                    (c for c in columns if c.strip().casefold() == str(key).strip().casefold()), None)
                key_map[key] = column
                if column is not None and column != key:
                    source.notes.append(f"key {key!r} read as {column!r} (case or spaces differ)")
            if column is not None:
                if column in picked:
                    raise DataError("two keys of this object name the same column", file=source.path, row=row,
                                    column=column)
                picked[column] = value
        kept.append(picked)
    frame = pd.DataFrame.from_records(kept, columns=list(columns) if columns is not None else None).astype(object)
    frame = frame.where(frame.notna(), None)
    if columns is not None:
        for column in columns:
            if column not in key_map.values():
                raise DataError(f"required key is missing from every row ({describe_header(sorted(map(str, key_map)))})",
                                file=source.path, column=column)
    return _drop_trailing_blank(frame, source) if len(frame) else _no_rows(source)


def _no_rows(source: TableSource):
    raise DataError("has no data rows", file=source.path)


def _json_type(value) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _read_parquet(source_obj, name: str, columns: Sequence[str] | None) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading Parquet needs pyarrow: pip install 'trustfm[parquet]'") from None
    try:
        parquet = pq.ParquetFile(source_obj)
        header = parquet.schema_arrow.names
        if columns is not None:
            positions = _match_columns(header, columns, TableSource(name, "parquet"))
            table = parquet.read(columns=[header[positions[c]] for c in columns])
            frame = table.to_pandas().astype(object)
            frame.columns = list(columns)
        else:
            _check_header(header, TableSource(name, "parquet"))
            frame = parquet.read().to_pandas().astype(object)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ValueError for damaged files
        raise DataError(f"not a readable Parquet file ({_short(exc)})", file=name) from None
    if len(frame) == 0:
        raise DataError("has no data rows", file=name)
    return frame.reset_index(drop=True)  # a stored pandas index would not number the rows from 0


def _read_hf(path: Path) -> pd.DataFrame:
    try:
        import datasets
    except ImportError:
        raise ConfigError("reading a saved dataset needs datasets: pip install 'trustfm[hf]'") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # a damaged folder: missing arrow files, bad JSON
        raise DataError(f"not a readable saved dataset ({_short(exc)})", file=str(path)) from None
    if isinstance(loaded, datasets.DatasetDict):
        raise DataError(
            f"this is a DatasetDict with splits {list(loaded)}; point at one split's folder",
            file=str(path),
        )
    return loaded.to_pandas().astype(object)


def _select(frame: pd.DataFrame, columns: Sequence[str] | None, source: TableSource) -> pd.DataFrame:
    """The configured columns of a fully read frame (a saved dataset is read whole)."""
    if columns is None:
        return frame.reset_index(drop=True)
    positions = _match_columns(list(frame.columns), columns, source)
    picked = frame.iloc[:, [positions[c] for c in columns]].copy()
    picked.columns = list(columns)
    if len(picked) == 0:
        raise DataError("has no data rows", file=source.path)
    return picked.reset_index(drop=True)


def _short(exc: BaseException) -> str:
    """The first line of an exception message, cut to 200 characters (library messages can quote data)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str = "auto", *, encrypt_key: bytes | None = None) -> Path:
    """Write ``frame`` as csv, tsv, jsonl or parquet (by ``fmt`` or the file extension), crash-safely.

    With ``encrypt_key`` the file is AES-GCM encrypted (:mod:`trustfm.encryption`); ``read_table`` reads it back.

    Delimited files are written the way :func:`read_table` reads them back, so a
    cleaned copy round-trips; undecodable bytes kept as surrogates are written back as they were.
    """
    from trustfm.fileio import atomic_path

    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in ("csv", "tsv", "jsonl", "parquet"):
        raise ConfigError(f"cannot write format '{fmt}' ({path}); use .csv, .tsv, .jsonl or .parquet")
    with atomic_path(path) as tmp:
        if fmt in ("csv", "tsv"):
            # TSV as read: no quoting at all (a text with a tab or newline could not have been read either)
            options = {"sep": "\t", "quoting": csv.QUOTE_NONE, "quotechar": "\x00"} if fmt == "tsv" else {"sep": ","}
            frame.to_csv(tmp, index=False, encoding="utf-8", errors="surrogateescape", **options)
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_parquet(tmp, index=False)
        if encrypt_key is not None:
            from trustfm.encryption import encrypt_bytes

            tmp.write_bytes(encrypt_bytes(tmp.read_bytes(), encrypt_key))
    return path
