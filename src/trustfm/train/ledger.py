"""The privacy ledger: how much epsilon each dataset has spent, across runs, processes and crashes.

One JSON line per DP run, keyed by the run folder::

    {"run_dir": ..., "data_sha256": ..., "dataset": ..., "status": "reserved", "epsilon": 4.0, ...}

Write-ahead accounting: a DP run *reserves* its planned epsilon before its
first step, in one step that reads the ledger, checks the dataset's budget and
appends the reservation under an exclusive file lock. Two runs started together
cannot both pass the check. At the end the entry is *settled* to the epsilon
the accountant computed. A run that fails before its first step *releases* it.
A run killed mid-training keeps its reservation (its checkpoint already holds
noisy updates computed from the data) until it is resumed and settled, or
abandoned with ``trustfm ledger abandon RUN_DIR``, which deletes what the run
trained and releases the entry.

Statuses that count against the budget: ``reserved`` (planned epsilon) and
``settled`` (spent epsilon); entries written before statuses existed count as
settled. Epsilons add up (basic composition), a conservative bound.

The lock is ``fcntl.flock`` on ``LEDGER.lock``: it holds between processes on
one machine. A ledger on a network file system shared by several machines needs
a lock service instead.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from trustfm.errors import ConfigError, DataError
from trustfm.fileio import exclusive_lock, write_lines_atomic

COUNTING = ("reserved", "settled")


def ledger_path(configured: Path | None) -> Path:
    """The ledger: the configured file, else ``$TRUSTFM_PRIVACY_LEDGER``, else ``~/.trustfm/privacy-ledger.jsonl``."""
    if configured is not None:
        return Path(configured)
    env = os.environ.get("TRUSTFM_PRIVACY_LEDGER")
    return Path(env) if env else Path.home() / ".trustfm" / "privacy-ledger.jsonl"


def run_key(run_dir: str | Path) -> str:
    """How the ledger names a run: its folder's absolute path."""
    return str(Path(run_dir).resolve())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def spent_on(entries: list[dict], data_sha256: str) -> float:
    """Epsilon that counts against one dataset's budget: reserved plus settled entries."""
    return float(sum(e["epsilon"] for e in entries
                     if e["data_sha256"] == data_sha256 and e.get("status", "settled") in COUNTING))


class PrivacyLedger:
    """The ledger file at ``path``; every method takes the lock for its whole read-check-write."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.path.name or self.path.is_dir():
            raise ConfigError(f"privacy ledger {self.path} is a folder; give a file path (privacy.ledger)")
        with exclusive_lock(self.path.with_name(self.path.name + ".lock"), target=self.path):
            yield

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                float(entry["epsilon"]), str(entry["data_sha256"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise DataError("not a privacy ledger entry (the ledger was edited by hand?)",
                                file=str(self.path), row=number) from None
            entries.append(entry)
        return entries

    def _write(self, entries: list[dict]) -> None:
        write_lines_atomic(self.path, (json.dumps(e) for e in entries))

    def entries(self) -> list[dict]:
        """Every entry, in the order recorded."""
        with self._locked():
            return self._read()

    def spent(self, data_sha256: str) -> float:
        """Epsilon counting against this dataset now (reservations included)."""
        return spent_on(self.entries(), data_sha256)

    def reserve(self, *, run_dir: str, data_sha256: str, dataset: str, epsilon: float, delta: float,
                accountant: str, total_budget: float | None) -> dict:
        """Check the budget and reserve ``epsilon`` for ``run_dir`` in one locked step; returns the entry.

        Idempotent for a resumed run: an entry that already counts for ``run_dir``
        is returned unchanged. Raises :class:`ConfigError` when the dataset's
        reserved and settled epsilon plus this one would exceed ``total_budget``.
        """
        with self._locked():
            entries = self._read()
            mine = [e for e in entries if e.get("run_dir") == run_dir and e.get("status", "settled") in COUNTING]
            if mine:
                return mine[-1]
            spent = spent_on(entries, data_sha256)
            if total_budget is not None and spent + epsilon > total_budget + 1e-9:
                raise ConfigError(
                    f"privacy budget: {dataset} (sha256 {data_sha256[:12]}…) has spent or reserved epsilon "
                    f"{spent:.3g} of its total {total_budget:.3g} (ledger {self.path}); this run would spend "
                    f"{epsilon:.3g} more. Lower privacy.dp.epsilon, raise privacy.total_epsilon, or use other data")
            entry = {"recorded": _now(), "run_dir": run_dir, "data_sha256": data_sha256, "dataset": dataset,
                     "status": "reserved", "epsilon": float(epsilon), "planned_epsilon": float(epsilon),
                     "delta": delta, "accountant": accountant}
            self._write([*entries, entry])
            return entry

    def _update(self, run_dir: str, **changes) -> dict | None:
        with self._locked():
            entries = self._read()
            for entry in reversed(entries):
                if entry.get("run_dir") == run_dir and entry.get("status", "settled") in COUNTING:
                    entry.update(changes, updated=_now())
                    self._write(entries)
                    return entry
        return None

    def settle(self, run_dir: str, epsilon: float) -> dict | None:
        """Replace the run's reservation by the epsilon its accountant computed."""
        return self._update(run_dir, status="settled", epsilon=float(epsilon))

    def release(self, run_dir: str, *, reason: str) -> dict | None:
        """The run used no data (it failed before its first step, or was abandoned): its entry stops counting."""
        return self._update(run_dir, status="released", epsilon=0.0, released_because=reason)
