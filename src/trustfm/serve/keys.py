"""API keys: created once and shown once, kept only as salted hashes, compared in constant time.

A key reads ``tfm_<id>_<secret>``: the id (8 hex characters) finds the record, the 32-byte
secret is checked against its scrypt hash. The keys file (JSON, mode 0600) holds ids, names,
hashes, salts, creation and revocation times; never a key.

Replicas share their keys through a database instead (:class:`DatabaseKeyStore`, ``state_url``): the same
records in one table, re-read by every replica at most ``refresh_s`` seconds after a change, so a key revoked
anywhere is refused everywhere within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from trustfm.errors import ConfigError

PREFIX = "tfm_"


def _hash(secret: str, salt: bytes) -> str:
    # scrypt, not a bare sha256: a stolen keys file must not be cheap to brute-force (cost kept low: keys are random)
    return hashlib.scrypt(secret.encode(), salt=salt, n=2 ** 12, r=8, p=1, dklen=32).hex()


class _Keys:
    """What every key store does with its records (``{id: record}``): create, revoke, check, list.

    Subclasses load the records (:meth:`_load`), persist a changed one (:meth:`_save`) and re-read them when
    another process may have changed them (:meth:`reload_if_changed`).
    """

    records: dict[str, dict]
    where: str  # named in messages

    def _reset(self, records: dict[str, dict]) -> None:
        self.records = records
        self._verified: dict[str, str] = {}  # sha256 of a key already checked -> its id (memory only)

    def _save(self, record: dict) -> None:
        raise NotImplementedError

    def reload_if_changed(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the store holds open (a database pool)."""

    def refresh_due(self) -> bool:
        """True when the next :meth:`reload_if_changed` waits on the network (callers then call it off the event
        loop)."""
        return False

    def create(self, name: str) -> str:
        """A new key for ``name`` (returned once, never stored)."""
        from trustfm.runs import now_iso

        self.reload_if_changed()
        if any(r["name"] == name and not r.get("revoked") for r in self.records.values()):
            raise ConfigError(f"a key named '{name}' already exists: revoke it first or choose another name")
        key_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_bytes(16)
        self.records[key_id] = {"id": key_id, "name": name, "salt": salt.hex(), "hash": _hash(secret, salt),
                                "created": now_iso(), "revoked": None}
        self._save(self.records[key_id])
        return f"{PREFIX}{key_id}_{secret}"

    def revoke(self, name_or_id: str) -> dict:
        """Mark a key revoked (by name or id); returns its record."""
        from trustfm.runs import now_iso

        self.reload_if_changed()
        found = [r for r in self.records.values() if name_or_id in (r["id"], r["name"]) and not r.get("revoked")]
        if not found:
            raise ConfigError(f"no active key named or numbered '{name_or_id}' in {self.where}")
        for record in found:
            record["revoked"] = now_iso()
            self._save(record)
        self._verified.clear()
        return found[0]

    def check(self, presented: str | None) -> str | None:
        """The key's id when ``presented`` is an active key, else None (constant-time on the secret).

        The scrypt check runs once per key and process; later requests with the same key match a sha256 of it
        (kept in memory only, dropped when the records change).
        """
        if not presented or not presented.startswith(PREFIX) or presented.count("_") < 2:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        if digest in self._verified:
            return self._verified[digest]
        key_id, _, secret = presented[len(PREFIX):].partition("_")
        record = self.records.get(key_id)
        if record is None or record.get("revoked"):
            # hash anyway, so an unknown id takes as long as a wrong secret
            _hash(secret, b"0" * 16)
            return None
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(record["salt"])), record["hash"]):
            return None
        self._verified[digest] = key_id
        return key_id

    def active(self) -> list[dict]:
        """The active keys' public fields (id, name, created)."""
        return [{k: r[k] for k in ("id", "name", "created")} for r in self.records.values() if not r.get("revoked")]


class KeyStore(_Keys):
    """The keys file of a service; ``create``/``revoke`` write it atomically, ``check`` reads the loaded copy."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.where = str(self.path)
        self._load()

    def _load(self) -> None:
        self._reset({})
        self._mtime = self.path.stat().st_mtime_ns if self.path.is_file() else None
        if self.path.is_file():
            try:
                self.records = {r["id"]: r for r in json.loads(self.path.read_text(encoding="utf-8"))["keys"]}
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path} is not a trustfm keys file ({type(exc).__name__})") from None

    def _save(self, record: dict) -> None:
        from trustfm.fileio import write_text_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"keys": list(self.records.values())}, indent=2), mode=0o600)
        self._mtime = self.path.stat().st_mtime_ns

    def reload_if_changed(self) -> None:
        """Re-read the keys file when it changed on disk (a key created or revoked while serving)."""
        mtime = self.path.stat().st_mtime_ns if self.path.is_file() else None
        if mtime != self._mtime:
            self._load()


class DatabaseKeyStore(_Keys):
    """The keys of a service with replicas: the same records in PostgreSQL (``trustfm_api_keys``).

    Each replica re-reads them at most ``refresh_s`` seconds after it last did (one small query), so a key
    created or revoked anywhere is accepted or refused by every replica within ``refresh_s`` seconds.
    """

    def __init__(self, url: str, *, refresh_s: float = 2.0):
        import time

        from trustfm.serve.limits import create_shared_tables, shared_engine

        self.engine = shared_engine(url, what="state_url")
        self.table = create_shared_tables(self.engine, what="state_url")[0]
        self.where = f"the shared keys of {self.engine.url.render_as_string(hide_password=True)}"
        self.refresh_s, self._clock = refresh_s, time.monotonic
        self._load()

    def _load(self) -> None:
        from sqlalchemy import select

        with self.engine.connect() as connection:
            rows = connection.execute(select(self.table)).mappings().all()
        records = {r["id"]: dict(r) for r in rows}
        if getattr(self, "records", None) != records:
            self._reset(records)
        self._loaded_at = self._clock()

    def _save(self, record: dict) -> None:
        from sqlalchemy.dialects.postgresql import insert

        statement = insert(self.table).values(**record)
        with self.engine.begin() as connection:
            connection.execute(statement.on_conflict_do_update(index_elements=["id"],
                                                               set_={"revoked": statement.excluded.revoked}))

    def refresh_due(self) -> bool:
        return self._clock() - self._loaded_at >= self.refresh_s

    def reload_if_changed(self) -> None:
        """Re-read the records when ``refresh_s`` seconds have passed since the last read."""
        if self.refresh_due():
            self._load()

    def close(self) -> None:
        self.engine.dispose()
