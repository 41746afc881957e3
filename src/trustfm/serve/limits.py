"""Per-key limits of the service: a rate limit, a query budget and the model-extraction watch.

Two implementations of one interface (:class:`Limits`):

- :class:`LocalLimits` keeps them in this process's memory (the single-process default);
- :class:`SharedLimits` keeps them in PostgreSQL (``state_url``), so that they hold for every replica together: a
  client that spreads its requests over N replicas gets the service's limit, not N times it, and an extraction
  spread over replicas is seen as one.

Every method may block (the shared one talks to the database): the service calls them off its event loop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, deque
from typing import Callable

from trustfm.errors import ConfigError

log = logging.getLogger("trustfm.serve")

# an extraction alert: (key id, texts in the window, distinct texts in it)
AlertCallback = Callable[[str, int, int], None]
# the share of distinct texts in a window above which a busy key's traffic looks like extraction
DISTINCT_SHARE = 0.95


class Limits:
    """``allow`` (rate), ``spend`` (budget), ``observe`` (extraction watch) per API key id."""

    shared = False  # True: the state lives outside this process (calls may wait on the network)
    budget: int | None = None  # texts one key may send over the service's life (None: no cap)

    def allow(self, key_id: str) -> float:
        """0 when a request by ``key_id`` may go ahead now, else the seconds until it may (nothing is spent)."""
        raise NotImplementedError

    def try_allow(self, key_id: str) -> float | None:
        """:meth:`allow` when it needs no waiting on the network (the event loop calls it directly), else None."""
        return None if self.shared else self.allow(key_id)

    def spend(self, key_id: str, texts: int) -> bool:
        """Count ``texts`` against ``key_id``'s query budget; False (and nothing counted) when they would exceed it."""
        raise NotImplementedError

    def observe(self, key_id: str, texts: list[str]) -> None:
        """Show ``texts`` (sent by ``key_id``) to the extraction watch; an alert calls the ``on_alert`` callback."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop background work (the shared watch's flusher); pending observations are flushed first."""


class ExtractionWatch:
    """Per key, over a sliding window: how many texts and how many distinct.

    Extraction attacks send many distinct texts (each query must teach the surrogate something new); ordinary
    clients repeat themselves or send few. A key over ``alert_texts`` texts in ``window_s`` seconds with at least
    95% of them distinct raises one alert per window.
    """

    def __init__(self, *, alert_texts: int, window_s: float, clock=time.monotonic):
        self.alert_texts, self.window_s, self.clock = alert_texts, window_s, clock
        # per key: (time, text hash) in the window, oldest first, and how often each hash is in it; a request
        # costs O(its texts + those leaving the window), not O(window): a busy key sends 10^5 texts in 10 minutes
        self.recent: dict[str, deque[tuple[float, int]]] = {}
        self.counts: dict[str, Counter] = {}
        self.alerted_at: dict[str, float] = {}

    def record(self, key: str, texts: list[str]) -> tuple[int, int] | None:
        """Count ``texts`` for ``key``; (texts, distinct texts) in the window when this raises an alert."""
        now = self.clock()
        window, counts = self.recent.setdefault(key, deque()), self.counts.setdefault(key, Counter())
        while window and now - window[0][0] > self.window_s:
            _, gone = window.popleft()
            counts[gone] -= 1
            if not counts[gone]:
                del counts[gone]
        for text in texts:
            window.append((now, hash(text)))
            counts[hash(text)] += 1
        if len(window) < self.alert_texts or now - self.alerted_at.get(key, -1e18) < self.window_s:
            return None
        if len(counts) >= DISTINCT_SHARE * len(window):
            self.alerted_at[key] = now
            return len(window), len(counts)
        return None


class RateLimiter:
    """Token bucket per API key: ``per_minute`` requests, refilled continuously, bursts up to the same number."""

    def __init__(self, per_minute: int, *, clock=time.monotonic):
        self.rate, self.capacity, self.clock = per_minute / 60.0, float(per_minute), clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class LocalLimits(Limits):
    """The limits in this process's memory: exact, and private to it (each worker or replica has its own)."""

    def __init__(self, *, per_minute: int, budget: int | None, alert_texts: int, window_s: float,
                 on_alert: AlertCallback):
        self.limiter = RateLimiter(per_minute)
        self.watch = ExtractionWatch(alert_texts=alert_texts, window_s=window_s)
        self.budget, self.on_alert = budget, on_alert
        self.totals: dict[str, int] = {}

    def allow(self, key_id: str) -> float:
        return self.limiter.allow(key_id)

    def spend(self, key_id: str, texts: int) -> bool:
        total = self.totals.get(key_id, 0) + texts
        if self.budget is not None and total > self.budget:
            return False
        self.totals[key_id] = total
        return True

    def observe(self, key_id: str, texts: list[str]) -> None:
        alert = self.watch.record(key_id, texts)
        if alert is not None:
            self.on_alert(key_id, *alert)


def stable_text_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that every process computes alike (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big") >> 1


def shared_engine(url: str, *, what: str, counters: bool = False):
    """A SQLAlchemy engine on the PostgreSQL at ``url``; ConfigError (one line, password masked) otherwise.

    Shared state needs a server every replica reaches and row locks that serialise concurrent updates: PostgreSQL.
    ``counters``: for the per-request limits. Each statement commits on its own (autocommit: one round trip, not
    three), and without waiting for the WAL to reach disk (``synchronous_commit off``): a database crash may
    forget the last fraction of a second of spending, never corrupt it, and every request stops paying an fsync.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{what}: '{url.split(':', 1)[0]}:…' is not a database URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"{what}: shared state needs PostgreSQL (postgresql+psycopg://...), not "
                          f"{parsed.get_backend_name()}; a single process keeps its state without state_url")
    # pool sized for the threads that call it (the event loop's executor and the watch's flusher)
    if not counters:
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    from sqlalchemy import event

    engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8, isolation_level="AUTOCOMMIT")

    @event.listens_for(engine, "connect")
    def _no_fsync_wait(connection, _record):
        cursor = connection.cursor()
        cursor.execute("SET synchronous_commit TO OFF")
        cursor.close()

    return engine


def shared_tables(metadata):
    """The shared-state tables: ``trustfm_api_keys`` (hashes, never keys), ``trustfm_key_usage`` (one row per key:
    its token bucket, texts spent, last extraction alert) and ``trustfm_watch_texts`` (per key, a 63-bit hash of
    each text sent and when, kept for the watch window only; never a text)."""
    from sqlalchemy import BigInteger, Column, Float, Index, String, Table

    keys = Table("trustfm_api_keys", metadata,
                 Column("id", String(16), primary_key=True),
                 Column("name", String(128), nullable=False),
                 Column("salt", String(64), nullable=False),
                 Column("hash", String(128), nullable=False),
                 Column("created", String(40), nullable=False),
                 Column("revoked", String(40)))
    usage = Table("trustfm_key_usage", metadata,
                  Column("key_id", String(16), primary_key=True),
                  Column("tokens", Float, nullable=False),
                  Column("refilled_at", Float, nullable=False),  # the database's clock, epoch seconds
                  Column("granted", Float, nullable=False),  # tokens the last lease took
                  Column("texts_total", BigInteger, nullable=False),
                  Column("alerted_at", Float))
    watch = Table("trustfm_watch_texts", metadata,
                  Column("key_id", String(16), nullable=False),
                  Column("text_hash", BigInteger, nullable=False),
                  Column("seen_at", Float, nullable=False),
                  Index("trustfm_watch_key_time", "key_id", "seen_at"),
                  Index("trustfm_watch_time", "seen_at"))
    return keys, usage, watch


def create_shared_tables(engine, *, what: str):
    """The shared tables on ``engine`` (created when missing); ConfigError naming ``what`` if unreachable."""
    from sqlalchemy import MetaData
    from sqlalchemy.exc import SQLAlchemyError

    from trustfm.serve.dbschema import create_tables

    metadata = MetaData()
    tables = shared_tables(metadata)
    try:
        create_tables(metadata, engine)
    except SQLAlchemyError as exc:
        raise ConfigError(f"{what} {engine.url.render_as_string(hide_password=True)}: cannot open the database "
                          f"({type(exc).__name__})") from None
    return tables


_NOW = "extract(epoch from clock_timestamp())"
# take up to :lease whole tokens from the key's bucket at once (refilled by the database's clock first); every
# SET expression reads the row as it was, so AVAILABLE is the same in each
_AVAILABLE = f"least(:capacity, u.tokens + ({_NOW} - u.refilled_at) * :rate)"
_LEASE = f"""
INSERT INTO trustfm_key_usage AS u (key_id, tokens, refilled_at, granted, texts_total)
VALUES (:key, :capacity - least(:lease, floor(:capacity)), {_NOW}, least(:lease, floor(:capacity)), 0)
ON CONFLICT (key_id) DO UPDATE SET
  granted = least(:lease, floor({_AVAILABLE})),
  tokens = {_AVAILABLE} - least(:lease, floor({_AVAILABLE})),
  refilled_at = {_NOW}
RETURNING granted, tokens
"""
_SPEND = f"""
INSERT INTO trustfm_key_usage AS u (key_id, tokens, refilled_at, granted, texts_total)
VALUES (:key, :capacity, {_NOW}, 0, :texts)
ON CONFLICT (key_id) DO UPDATE SET texts_total = u.texts_total + :texts
WHERE u.texts_total + :texts <= :budget
RETURNING texts_total
"""
_WINDOW_COUNTS = f"""
SELECT key_id, count(*), count(DISTINCT text_hash) FROM trustfm_watch_texts
WHERE key_id = ANY(:keys) AND seen_at > {_NOW} - :window
GROUP BY key_id
"""
_CLAIM_ALERT = f"""
INSERT INTO trustfm_key_usage AS u (key_id, tokens, refilled_at, granted, texts_total, alerted_at)
VALUES (:key, :capacity, {_NOW}, 0, 0, {_NOW})
ON CONFLICT (key_id) DO UPDATE SET alerted_at = {_NOW}
WHERE u.alerted_at IS NULL OR u.alerted_at < {_NOW} - :window
RETURNING key_id
"""


class SharedLimits(Limits):
    """The limits in PostgreSQL, for every replica together.

    - Rate: one token bucket per key in ``trustfm_key_usage``, refilled by the database's clock and updated by one
      ``INSERT ... ON CONFLICT DO UPDATE`` (the row lock serialises replicas). A replica takes ``lease`` tokens
      at a time (default: 1/50 of the bucket, at most 16) and spends them within ``lease_s`` seconds: never
      more than the limit across replicas, and at most ``replicas x lease`` fewer.
    - Budget: texts spent per key, added in one conditional update: never over the budget, across replicas.
    - Extraction watch: each replica buffers (key, text hash) pairs and, every ``flush_s`` seconds, writes them
      and counts each active key's texts and distinct texts over the window from every replica's rows; the
      first replica to see a key over the line claims the alert (one per key and window, service-wide). An
      alert is raised within ``flush_s`` seconds of the text that crossed the line.
    """

    shared = True

    def __init__(self, url: str, *, per_minute: int, budget: int | None, alert_texts: int, window_s: float,
                 on_alert: AlertCallback, flush_s: float = 2.0, lease: int | None = None, lease_s: float = 1.0):
        self.engine = shared_engine(url, what="state_url", counters=True)
        _, self.usage, self.watch_table = create_shared_tables(self.engine, what="state_url")
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self.budget, self.alert_texts, self.window_s = budget, alert_texts, window_s
        self.on_alert, self.flush_s = on_alert, flush_s
        # tokens are taken from the shared bucket a few at a time and spent here: one database call per `lease`
        # requests of a busy key instead of one per request. The service's limit still holds (a leased token left
        # the bucket); a key may get up to (replicas x lease - 1) fewer than its limit while leases are held
        self.lease = min(16, max(1, int(self.capacity // 50))) if lease is None else lease
        self.lease_s = lease_s
        self._leases: dict[str, tuple[int, float]] = {}
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="trustfm-watch", daemon=True)
        self._flusher.start()

    def try_allow(self, key_id: str) -> float | None:
        """0 when this replica holds a leased token for ``key_id`` (taken, no database call); None otherwise."""
        with self._lock:
            held, until = self._leases.get(key_id, (0, 0.0))
            if held >= 1 and time.monotonic() < until:
                self._leases[key_id] = (held - 1, until)
                return 0.0
        return None

    def allow(self, key_id: str) -> float:
        from sqlalchemy import text

        if self.try_allow(key_id) == 0.0:
            return 0.0
        with self.engine.connect() as connection:
            granted, tokens = connection.execute(text(_LEASE), dict(
                key=key_id, capacity=self.capacity, rate=self.rate, lease=self.lease)).one()
        if granted < 1:
            return (1.0 - tokens) / self.rate
        with self._lock:
            # one token for this request; the rest held here for lease_s at most (then forgotten, not returned),
            # added to what another thread may have leased meanwhile
            held, until = self._leases.get(key_id, (0, 0.0))
            now = time.monotonic()
            self._leases[key_id] = ((held if now < until else 0) + int(granted) - 1, now + self.lease_s)
        return 0.0

    def spend(self, key_id: str, texts: int) -> bool:
        from sqlalchemy import text

        if self.budget is None:
            return True
        if texts > self.budget:
            return False
        with self.engine.connect() as connection:
            row = connection.execute(text(_SPEND), dict(key=key_id, capacity=self.capacity, texts=texts,
                                                        budget=self.budget)).first()
        return row is not None

    def observe(self, key_id: str, texts: list[str]) -> None:
        with self._lock:
            self._buffer.extend({"key_id": key_id, "text_hash": stable_text_hash(t)} for t in texts)

    def flush(self) -> None:
        """Write the buffered observations, forget those older than the window, judge the keys just seen."""
        from sqlalchemy import bindparam, text

        with self._lock:
            rows, self._buffer = self._buffer, []
        keys = sorted({r["key_id"] for r in rows})
        with self.engine.begin() as connection:
            # every key's hashes leave once the window has passed, a key gone quiet included
            connection.execute(text("DELETE FROM trustfm_watch_texts "
                                    "WHERE seen_at <= extract(epoch from clock_timestamp()) - :window"),
                               dict(window=self.window_s))
            if not rows:
                return
            connection.execute(self.watch_table.insert().values(
                seen_at=text("extract(epoch from clock_timestamp())")), rows)
            counts = connection.execute(text(_WINDOW_COUNTS).bindparams(bindparam("keys")),
                                        dict(keys=keys, window=self.window_s)).all()
        for key_id, total, distinct in counts:
            if total < self.alert_texts or distinct < DISTINCT_SHARE * total:
                continue
            with self.engine.connect() as connection:
                claimed = connection.execute(text(_CLAIM_ALERT), dict(
                    key=key_id, capacity=self.capacity, window=self.window_s)).first()
            if claimed is not None:
                self.on_alert(key_id, int(total), int(distinct))

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the service keeps answering; the type says what to look for
                log.error("extraction watch: could not reach the shared state (%s)", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=10)
        try:
            self.flush()
        finally:
            self.engine.dispose()
