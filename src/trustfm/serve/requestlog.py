"""The request log: every request, answer and feedback in a database, never a raw text by default.

SQLAlchemy Core over any URL: SQLite (a file in the run folder) by default, PostgreSQL for a
shared deployment (``postgresql+psycopg://...``). Texts are stored as the PII scanner's
redaction (``redacted``), as a salted sha256 (``hash``: lets monitoring count repeats, never
read them), or not at all (``none``). A request's rows are committed before its answer is
sent, so an acknowledged request is never lost. The monitoring stage reads these tables.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timezone
from typing import Literal, Sequence

from trustfm.errors import ConfigError

TextPolicy = Literal["redacted", "hash", "none"]


def _tables(metadata):
    from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, String, Table, Text

    requests = Table(
        "trustfm_requests", metadata,
        Column("request_id", String(36), primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("key_id", String(16)),  # the API key's public id, never the key
        Column("endpoint", String(32), nullable=False),
        Column("texts", Integer, nullable=False),
        Column("status", Integer, nullable=False),
        Column("latency_ms", Float),
        Column("model_sha256", String(64)),
    )
    predictions = Table(
        "trustfm_predictions", metadata,
        Column("request_id", String(36), primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("text", Text),  # redacted text, salted hash, or NULL, by the log's text policy
        Column("text_chars", Integer, nullable=False),
        Column("label", String(128)),  # None: a rule abstained
        Column("model_label", String(128), nullable=False),
        Column("confidence", Float),
        Column("probabilities", JSON),
        Column("ood", Boolean),
        Column("rule", String(128)),
        Column("truncated", Boolean, nullable=False),
    )
    feedback = Table(
        "trustfm_feedback", metadata,
        Column("request_id", String(36), primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("true_label", String(128), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("key_id", String(16)),
    )
    return requests, predictions, feedback


class RequestLog:
    """The log at ``url``; tables are created when missing. ``scanner``: the PII scanner redacting texts."""

    def __init__(self, url: str, *, text_policy: TextPolicy = "redacted", privacy=None, salt: str | None = None):
        from sqlalchemy import MetaData, create_engine
        from sqlalchemy.exc import SQLAlchemyError

        if text_policy not in ("redacted", "hash", "none"):
            raise ConfigError(f"log_text must be redacted, hash or none, not {text_policy!r}")
        self.url, self.text_policy = url, text_policy
        # a salt per log: the same text hashes alike within one log, and hashes cannot be looked up elsewhere
        self.salt = salt or secrets.token_hex(16)
        self.privacy = privacy
        self.metadata = MetaData()
        self.requests, self.predictions, self.feedback = _tables(self.metadata)
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(url, pool_pre_ping=True)
            if self.engine.dialect.name == "sqlite":
                from sqlalchemy import event

                @event.listens_for(self.engine, "connect")
                def _wal(connection, _record):
                    # write-ahead log: a commit survives a killed process without an fsync per request, and
                    # several workers can write the same file
                    cursor = connection.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    cursor.execute("PRAGMA busy_timeout=10000")
                    cursor.close()
            self.metadata.create_all(self.engine)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"request log {self.safe_url}: cannot open the database ({type(exc).__name__})") from None

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a URL too malformed to parse is shown by its scheme only
            return self.url.split(":", 1)[0] + ":…"

    def stored_texts(self, texts: Sequence[str]) -> list[str | None]:
        """What the log keeps of each text, by its policy (NUL characters, which PostgreSQL's text type cannot
        hold, become U+FFFD)."""
        if self.text_policy == "none":
            return [None] * len(texts)
        if self.text_policy == "hash":
            return [hashlib.sha256((self.salt + t).encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        from trustfm.data.pii import PIIScanner

        if not hasattr(self, "_scanner"):
            privacy = self.privacy
            self._scanner = PIIScanner(**({} if privacy is None else {"mentions": privacy.mentions,
                                                                      "hashtags": privacy.hashtags}))
        return [t.replace("\x00", "\ufffd") for t in self._scanner.redact(list(texts))]

    def record(self, *, request_id: str, endpoint: str, key_id: str | None, status: int, latency_ms: float,
               model_sha256: str | None, texts: Sequence[str] = (), answers: Sequence[dict] = ()) -> None:
        """One request and its answers, in one transaction (committed when this returns)."""
        stored = self.stored_texts(texts) if answers else []
        with self.engine.begin() as connection:
            connection.execute(self.requests.insert().values(
                request_id=request_id, received_at=datetime.now(timezone.utc), key_id=key_id, endpoint=endpoint,
                texts=len(texts), status=status, latency_ms=latency_ms, model_sha256=model_sha256))
            if answers:
                connection.execute(self.predictions.insert(), [
                    {"request_id": request_id, "position": i, "text": s, "text_chars": len(t), "label": a["label"],
                     "model_label": a.get("model_label") or a["label"], "confidence": a.get("confidence"),
                     "probabilities": json.loads(json.dumps(a["probabilities"])), "ood": a.get("ood"),
                     "rule": a.get("rule"), "truncated": a["truncated"]}
                    for i, (t, s, a) in enumerate(zip(texts, stored, answers))])

    def add_feedback(self, *, request_id: str, position: int, true_label: str, key_id: str | None) -> bool:
        """Record the true label of an earlier answer; False when that request/position was never answered."""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        with self.engine.begin() as connection:
            known = connection.execute(select(self.predictions.c.request_id).where(
                self.predictions.c.request_id == request_id, self.predictions.c.position == position)).first()
            if known is None:
                return False
            try:
                connection.execute(self.feedback.insert().values(
                    request_id=request_id, position=position, true_label=true_label,
                    received_at=datetime.now(timezone.utc), key_id=key_id))
            except IntegrityError:
                raise ConfigError(f"feedback for request {request_id} position {position} was already given") from None
        return True

    def close(self) -> None:
        self.engine.dispose()
