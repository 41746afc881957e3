"""Crash-safe writes: every file trustfm writes goes to a temporary file, is fsynced, then renamed.

A reader (or a rerun after ``kill -9``) therefore sees either the previous
version of a file or the complete new one, never half of it. A failed write
(disk full, read-only folder) removes its temporary file and raises
:class:`~trustfm.errors.OutputError` naming the path, so no partial output is
left behind.

The temporary name is unique per process and write (``.NAME.PID.RANDOM.tmp``
beside the target), so concurrent writers never share one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from trustfm.errors import OutputError

TMP_SUFFIX = ".tmp"

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """One clear line for a failed write: the path and why (no traceback)."""
    reason = _REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return OutputError(f"cannot write {path}: {reason}")


@contextmanager
def exclusive_lock(lock_file: str | Path, *, blocking: bool = True, target: str | Path | None = None) -> Iterator[bool]:
    """An exclusive ``flock`` on ``lock_file`` (created, with its folder) for the ``with`` block; yields whether it
    was taken: always True when ``blocking`` (it waits), False when another process holds it. A failure to create
    the file is one :class:`OutputError` line naming ``target`` (what the caller protects; default the lock file)."""
    import fcntl

    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_file, "a+")
    except OSError as exc:
        raise output_error(target if target is not None else lock_file, exc) from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary name in ``path``'s folder (same file system, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}")


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Best effort: on a read-only or vanished file system the temporary may never have existed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write (a file, or a folder the caller creates); on success it replaces ``path``.

    The content is fsynced before the rename and the folder after it. On any
    exception the temporary path is removed; an ``OSError`` becomes an
    :class:`OutputError` naming ``path``. ``mode`` sets the file's permissions
    (e.g. ``0o600`` for keys) before the content becomes visible.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc) from None
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        _fsync_tree(tmp)
        if tmp.is_dir() and path.is_dir():
            # a folder cannot be renamed over a non-empty one: move the old one aside first
            old = temporary_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as exc:
        _remove(tmp)
        raise output_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` crash-safely; returns ``path``."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    """Write UTF-8 ``text`` to ``path`` crash-safely; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8", errors="surrogateescape"), mode=mode)


def write_json_atomic(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON crash-safely; returns ``path``."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_lines_atomic(path: str | Path, lines) -> Path:
    """Write an iterable of strings, one per line, crash-safely (streamed: memory stays bounded)."""
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8", errors="surrogateescape") as handle:
            for line in lines:
                handle.write(line + "\n")
    return Path(path)


def leftover_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files a killed writer left in ``folder`` (recursively); safe to delete."""
    return sorted(p for p in Path(folder).rglob(f".*{TMP_SUFFIX}"))
