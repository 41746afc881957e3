"""Per-key limits: the in-memory ones of one process, and the PostgreSQL-backed ones every replica shares (a
real PostgreSQL: two ``SharedLimits`` stand for two replicas)."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from trustfm.errors import ConfigError


def test_the_extraction_watch_counts_distinct_texts_within_its_window_only():
    from trustfm.serve.limits import ExtractionWatch

    now = [0.0]
    watch = ExtractionWatch(alert_texts=100, window_s=60, clock=lambda: now[0])
    for second in range(50):  # 2 texts a second, one repeated: half distinct, never an alert
        now[0] = float(second)
        assert watch.record("a", ["same", f"new {second}"]) is None
    now[0] = 1000.0  # the window has passed: what was sent before is forgotten
    assert watch.record("a", [f"fresh {i}" for i in range(99)]) is None
    assert len(watch.recent["a"]) == 99 and len(watch.counts["a"]) == 99
    assert watch.record("a", ["fresh 99"]) == (100, 100)  # 100 distinct texts within 60 s: an alert, once
    assert watch.record("a", ["fresh 100"]) is None


def test_local_budget_never_goes_over_and_counts_nothing_refused():
    from trustfm.serve.limits import LocalLimits

    limits = LocalLimits(per_minute=60, budget=10, alert_texts=10, window_s=60, on_alert=lambda *a: None)
    assert limits.spend("k", 6) and not limits.spend("k", 5) and limits.spend("k", 4) and not limits.spend("k", 1)
    assert limits.totals["k"] == 10


def test_the_text_hash_is_the_same_in_every_process():
    import subprocess
    import sys

    from trustfm.serve.limits import stable_text_hash

    code = "from trustfm.serve.limits import stable_text_hash; print(stable_text_hash('a text'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(other) == stable_text_hash("a text") and 0 <= stable_text_hash("a text") < 2 ** 63


@contextlib.contextmanager
def _two_replicas(url, alerts=None, **options):
    """Two ``SharedLimits`` on one database, as two replicas hold them; closed after."""
    one, two = _shared(url, alerts, **options), _shared(url, alerts, **options)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def _shared(url, alerts=None, **options):
    from trustfm.serve.limits import SharedLimits

    settings = dict(per_minute=60, budget=None, alert_texts=50, window_s=60.0, flush_s=3600.0)
    return SharedLimits(url, on_alert=lambda *a: alerts.append(a) if alerts is not None else None,
                        **{**settings, **options})


@pytest.mark.parametrize("lease", [1, 6])
def test_a_rate_limit_holds_for_two_replicas_together(postgres_url, lease):
    # 60 per minute, bursts of 60: two replicas hammering one key admit 60 (+ the refill meanwhile), not 120;
    # leasing tokens a few at a time changes how often the database is asked, not the limit
    key = f"rate-key-{lease}"
    with _two_replicas(postgres_url, lease=lease) as (one, two):
        admitted, started = [], time.monotonic()

        def hammer(limits):
            admitted.extend(limits.allow(key) == 0 for _ in range(80))

        threads = [threading.Thread(target=hammer, args=(x,)) for x in (one, two, one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refill = (time.monotonic() - started) * 1.0  # one token a second
        assert 60 <= sum(admitted) <= 60 + refill + 1, (sum(admitted), refill)
        time.sleep(1.1)  # leases run out
        wait = one.allow(key)
        assert wait == 0 or two.allow(key) == 0  # a second's refill
        assert 0 < one.allow(key) <= 1.0 or 0 < two.allow(key) <= 1.0  # then the next token is a second away
        assert two.allow("another-key") == 0  # keys are separate


def test_a_query_budget_holds_for_two_replicas_together(postgres_url):
    with _two_replicas(postgres_url, budget=100) as (one, two):
        spent = []
        threads = [threading.Thread(target=lambda x=x: spent.extend(7 for _ in range(20) if x.spend("budget-key", 7)))
                   for x in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(spent) == 98  # 14 requests of 7 fit in 100, whichever replica took them
        assert one.spend("budget-key", 2) and not two.spend("budget-key", 1)
        assert not one.spend("fresh-key", 101) and one.spend("fresh-key", 100)


def test_an_extraction_spread_over_replicas_is_seen_and_alerted_once(postgres_url):
    alerts = []
    with _two_replicas(postgres_url, alerts) as (one, two):
        for i in range(30):  # 30 distinct texts through each replica: neither alone reaches 50
            one.observe("spread-key", [f"probe {i}"])
            two.observe("spread-key", [f"probe {30 + i}"])
        one.observe("calm-key", ["hello"] * 60)  # many texts, one distinct: not extraction
        one.flush()
        assert alerts == []  # replica one alone has seen 30 of this key's texts
        two.flush()
        one.flush()
        assert alerts == [("spread-key", 60, 60)]  # seen together, alerted by one replica only
        two.observe("spread-key", ["probe 61"])
        two.flush()
        assert len(alerts) == 1  # one alert per key and window, service-wide


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_the_refresh(postgres_url):
    from trustfm.serve.keys import DatabaseKeyStore

    admin, replica = DatabaseKeyStore(postgres_url, refresh_s=0.5), DatabaseKeyStore(postgres_url, refresh_s=0.5)
    try:
        key = admin.create("revoke-me")
        time.sleep(0.6)
        replica.reload_if_changed()
        key_id = replica.check(key)
        assert key_id is not None and replica.check(key + "x") is None
        admin.revoke("revoke-me")
        replica.reload_if_changed()
        assert replica.check(key) == key_id  # within the refresh interval the replica may still accept it
        time.sleep(0.6)
        replica.reload_if_changed()
        assert replica.check(key) is None
        with pytest.raises(ConfigError, match="no active key"):
            admin.revoke("revoke-me")
        stored = str(admin.records)
        assert key.split("_", 2)[2] not in stored  # hashes only (the secret may itself hold "_")
    finally:
        admin.close()
        replica.close()


def test_shared_state_refuses_what_is_not_postgresql(tmp_path):
    from trustfm.serve.keys import DatabaseKeyStore

    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        DatabaseKeyStore(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="cannot open the database"):
        DatabaseKeyStore("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_the_watch_keeps_text_hashes_for_its_window_only(postgres_url):
    from sqlalchemy import create_engine, text

    one = _shared(postgres_url, window_s=0.5)
    try:
        one.observe("quiet-key", ["a", "b"])
        one.flush()
        engine = create_engine(postgres_url)
        count = "SELECT count(*) FROM trustfm_watch_texts WHERE key_id = 'quiet-key'"
        with engine.connect() as connection:
            assert connection.execute(text(count)).scalar_one() == 2
        time.sleep(0.6)
        one.flush()  # nothing new from anyone: the quiet key's hashes still go
        with engine.connect() as connection:
            assert connection.execute(text(count)).scalar_one() == 0
        engine.dispose()
    finally:
        one.close()
