"""Replicas starting together create the same tables at the same moment: none of them fails."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text

from conftest import fresh_database


def _together(open_one, n: int = 6) -> list[BaseException]:
    """Run ``open_one`` in ``n`` threads released at once; the exceptions they raised."""
    start, failures = threading.Barrier(n), []

    def run():
        start.wait()
        try:
            open_one()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_request_logs_and_shared_state_opened_together_all_start(postgres_url, tmp_path, backend):
    from trustfm.serve.keys import DatabaseKeyStore
    from trustfm.serve.requestlog import RequestLog

    def open_log(url):
        RequestLog(url, text_policy="hash").close()

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
        assert _together(lambda: open_log(url)) == []
        return
    url = fresh_database(postgres_url, "ddl_race")
    assert _together(lambda: open_log(url)) == []
    assert _together(lambda: DatabaseKeyStore(url).close()) == []
    engine = create_engine(url)
    with engine.connect() as connection:
        tables = {t for (t,) in connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))}
    engine.dispose()
    assert {"trustfm_requests", "trustfm_predictions", "trustfm_feedback", "trustfm_api_keys", "trustfm_key_usage",
            "trustfm_watch_texts"} <= tables
