"""The request log: every request, answer and feedback in a database, never a raw text by default.

SQLAlchemy Core over any URL: SQLite (a file in the run folder) by default, PostgreSQL for a
shared deployment (``postgresql+psycopg://...``). Each text is kept as a salted sha256
(``text_sha256``: lets monitoring count repeats, never read them) and, under the default
``redacted`` policy, as the PII scanner's redaction (``text``); ``hash`` keeps the hash only,
``none`` neither. The monitoring stage reads these tables.

Two background threads keep the log off the request path:

- a **group-commit writer**: requests hand their rows over and wait; the writer inserts every
  request that arrived meanwhile in one transaction, then releases them. A request's rows are
  committed before its answer is sent, so an acknowledged request is never lost.
- a **redactor**, at lower CPU priority: the raw texts of committed rows wait in memory (never
  on disk) and are redacted in batches (spaCy's ``pipe``, twice the rate of one text at a
  time), then written into ``text``. When more than ``redact_backlog_texts`` wait, a text keeps
  its hash only and ``unredacted_texts`` counts it: a burst never stalls answers nor grows
  memory without bound. A process killed before redaction leaves those rows with hashes only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import secrets
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Literal, Sequence

from trustfm.errors import ConfigError

TextPolicy = Literal["redacted", "hash", "none"]
log = logging.getLogger("trustfm.serve")
_STOP = object()


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
        Column("text", Text),  # the redacted text; NULL under the hash and none policies or until redacted
        Column("text_sha256", String(64)),  # salted sha256 of the raw text; NULL under the none policy
        Column("text_chars", Integer, nullable=False),
        Column("label", String(128)),  # None: a rule abstained
        Column("model_label", String(128), nullable=False),
        Column("confidence", Float),
        Column("probabilities", JSON),
        Column("ood", Boolean),
        Column("rule", String(128)),
        Column("truncated", Boolean, nullable=False),
        Column("group_value", String(128)),  # the group the client named for this text, if any
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
    """The log at ``url``; tables are created when missing, threads started on first use.

    ``privacy``: the run's privacy config (its handle policy steers redaction); ``salt``: the hashing salt
    (one per run folder, so every worker hashes alike); ``redact_backlog_texts``: raw texts that may wait for
    redaction before new ones keep their hash only.
    """

    def __init__(self, url: str, *, text_policy: TextPolicy = "redacted", privacy=None, salt: str | None = None,
                 redact_backlog_texts: int = 4096):
        from sqlalchemy import MetaData, create_engine
        from sqlalchemy.exc import SQLAlchemyError

        if text_policy not in ("redacted", "hash", "none"):
            raise ConfigError(f"log_text must be redacted, hash or none, not {text_policy!r}")
        self.url, self.text_policy = url, text_policy
        # a salt per log: the same text hashes alike within one log, and hashes cannot be looked up elsewhere
        self.salt = salt or secrets.token_hex(16)
        self.privacy = privacy
        self.redact_backlog_texts = redact_backlog_texts
        self.unredacted_texts = 0  # texts that kept their hash only: backlog full, or the redaction failed
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._to_redact: queue.SimpleQueue = queue.SimpleQueue()
        self._backlog = 0  # texts waiting for the redactor
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
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
            from trustfm.serve.dbschema import create_tables

            create_tables(self.metadata, self.engine)  # replicas starting together on one database
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"request log {self.safe_url}: cannot open the database ({type(exc).__name__})") from None

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return self.masked(self.url)

    @staticmethod
    def masked(url: str) -> str:
        """``url`` with any password masked."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a URL too malformed to parse is shown by its scheme only
            return url.split(":", 1)[0] + ":…"

    @property
    def redaction_backlog(self) -> int:
        """Raw texts (in memory) waiting for the redactor."""
        return self._backlog

    def text_hashes(self, texts: Sequence[str]) -> list[str | None]:
        """The salted sha256 of each text, or None under the ``none`` policy."""
        if self.text_policy == "none":
            return [None] * len(texts)
        return [hashlib.sha256((self.salt + t).encode("utf-8", "surrogatepass")).hexdigest() for t in texts]

    def submit(self, *, request_id: str, endpoint: str, key_id: str | None, status: int, latency_ms: float | None,
               model_sha256: str | None, texts: Sequence[str] = (), answers: Sequence[dict] = (),
               groups: Sequence[str | None] | None = None) -> Future:
        """Queue one request and its answers for the next group commit; the future is done once they are
        committed (its exception, if the database refused them)."""
        self._start()
        done: Future = Future()
        self._pending.put((done, dict(request_id=request_id, endpoint=endpoint, key_id=key_id, status=status,
                                      latency_ms=latency_ms, model_sha256=model_sha256), list(texts), list(answers),
                        list(groups) if groups is not None else [None] * len(texts)))
        return done

    def record(self, **entry) -> None:
        """:meth:`submit`, then wait for the commit (for callers off the event loop)."""
        self.submit(**entry).result()

    def flush(self) -> None:
        """Wait until everything submitted so far is committed and redacted."""
        self.submit(request_id="", endpoint="", key_id=None, status=0, latency_ms=None,
                    model_sha256=None).result()  # an empty entry (never written) marks the writer's position
        marker: Future = Future()
        self._to_redact.put(marker)
        marker.result()

    def _start(self) -> None:
        with self._lock:
            if not self._threads:
                self._threads = [threading.Thread(target=self._write_loop, name="trustfm-log-writer", daemon=True),
                                 threading.Thread(target=self._redact_loop, name="trustfm-log-redactor", daemon=True)]
                for thread in self._threads:
                    thread.start()

    @staticmethod
    def _batches(source: queue.SimpleQueue, limit: int):
        """Batches from ``source`` until the stop mark: each waits for one item, then takes what else is there,
        up to ``limit`` items (the items before the stop mark form the last batch)."""
        while True:
            first = source.get()
            if first is _STOP:
                return
            items = [first]
            while len(items) < limit:
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    yield items
                    return
                items.append(item)
            yield items

    def _write_loop(self) -> None:
        for entries in self._batches(self._pending, limit=1024):
            real = [e for e in entries if e[1]["request_id"]]
            try:
                self._insert(real)
            except Exception as exc:  # noqa: BLE001 - every waiting request learns that its rows were refused
                for done, *_ in entries:
                    done.set_exception(exc)
                continue
            if self.text_policy == "redacted":
                self._queue_redactions(real)
            for done, *_ in entries:
                done.set_result(None)

    def _insert(self, entries: list) -> None:
        """One transaction for every request in ``entries`` (the group commit)."""
        if not entries:
            return
        now = datetime.now(timezone.utc)
        requests, predictions = [], []
        for _, request, texts, answers, groups in entries:
            requests.append({**request, "received_at": now, "texts": len(texts)})
            hashes = self.text_hashes(texts) if answers else []
            predictions += [
                {"request_id": request["request_id"], "position": i, "text": None, "text_sha256": h,
                 "text_chars": len(t), "label": a["label"], "model_label": a.get("model_label") or a["label"],
                 "confidence": max(a["logged_probabilities"].values()) if "logged_probabilities" in a
                 else a.get("confidence"),
                 "probabilities": json.loads(json.dumps(a.get("logged_probabilities", a["probabilities"]))),
                 "ood": a.get("ood"), "rule": a.get("rule"), "truncated": a["truncated"], "group_value": g}
                for i, (t, h, a, g) in enumerate(zip(texts, hashes, answers, groups))]
        with self.engine.begin() as connection:
            connection.execute(self.requests.insert(), requests)
            if predictions:
                connection.execute(self.predictions.insert(), predictions)

    def _queue_redactions(self, entries: list) -> None:
        for _, request, texts, answers, _groups in entries:
            if not answers:
                continue
            with self._lock:
                room = max(0, min(len(texts), self.redact_backlog_texts - self._backlog))
                self._backlog += room
                self.unredacted_texts += len(texts) - room
            for position in range(room):
                self._to_redact.put((request["request_id"], position, texts[position]))

    def _redact_loop(self) -> None:
        from sqlalchemy import and_, bindparam

        from trustfm.data.pii import PIIScanner

        try:  # the redactor yields the CPU to answering (Linux: a thread's nice value is its own)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        scanner = None
        update = self.predictions.update().where(and_(
            self.predictions.c.request_id == bindparam("r"), self.predictions.c.position == bindparam("p"))
        ).values(text=bindparam("t"))
        for items in self._batches(self._to_redact, limit=256):
            markers = [i for i in items if isinstance(i, Future)]
            jobs = [i for i in items if not isinstance(i, Future)]
            if jobs:
                try:
                    if scanner is None:
                        privacy = self.privacy
                        scanner = PIIScanner(**({} if privacy is None else {
                            "mentions": privacy.mentions, "hashtags": privacy.hashtags}))
                    # NUL characters, which PostgreSQL's text type cannot hold, become U+FFFD
                    redacted = [t.replace("\x00", "\ufffd") for t in scanner.redact([t for _, _, t in jobs])]
                    with self.engine.begin() as connection:
                        connection.execute(update, [{"r": r, "p": p, "t": t}
                                                    for (r, p, _), t in zip(jobs, redacted)])
                except Exception as exc:  # noqa: BLE001 - the rows keep their hashes; the reason is logged, no text
                    log.warning("request log: %d texts keep their hash only (%s)", len(jobs), type(exc).__name__)
                    with self._lock:
                        self.unredacted_texts += len(jobs)
                with self._lock:
                    self._backlog -= len(jobs)
            for marker in markers:
                marker.set_result(None)

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
        """Commit what is queued, redact what waits, stop the threads, release the connections."""
        if self._threads:
            self._pending.put(_STOP)
            self._threads[0].join()
            self._to_redact.put(_STOP)
            self._threads[1].join()
            self._threads = []
        self.engine.dispose()
