"""Error types that map to the CLI's exit codes.

User errors (bad config, bad data) carry a message that names what is wrong and
where; the CLI prints it without a traceback. Anything else is an internal error.
"""

from __future__ import annotations


class TrustfmError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""

    exit_code = 1


class ConfigError(TrustfmError):
    """Invalid configuration, usage or model choice (exit code 2)."""

    exit_code = 2


class DataError(TrustfmError):
    """Invalid or unreadable data (exit code 3).

    ``file``, ``row`` (1-based data row, header excluded) and ``column`` locate the
    problem where they are known.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class CheckFailed(TrustfmError):
    """A check the user relies on failed: a gate rule, a verification, a release refused for a failed gate (exit
    code 4)."""

    exit_code = 4


class OutputError(TrustfmError):
    """A file could not be written: disk full, read-only folder, no permission (exit code 5).

    Whatever the failed write had started is removed; earlier versions stay as they were.
    """

    exit_code = 5


class FidelityError(TrustfmError):
    """A compressed model's outputs moved further from its parent's than the tolerance allows (exit code 6).

    Nothing is written: the compressed model is discarded, with the measured gap in the message.
    """

    exit_code = 6
