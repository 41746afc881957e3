"""Micro-batching across concurrent requests, and the request log on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from trustfm.errors import ConfigError
from trustfm.serve.batcher import MicroBatcher, QueueFull
from trustfm.serve.requestlog import RequestLog


def test_concurrent_requests_share_batches_within_budgets_and_keep_their_order():
    batches = []

    def answer(texts):
        batches.append(list(texts))
        return [t.upper() for t in texts]

    async def scenario():
        batcher = MicroBatcher(answer, count_tokens=len, max_batch_texts=8, max_batch_tokens=40, max_wait_ms=20,
                               max_queue_texts=20)
        await batcher.start()
        requests = [[f"r{r}t{i}" for i in range(3)] for r in range(5)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        with pytest.raises(QueueFull):
            await asyncio.gather(batcher.submit(["x"] * 15), batcher.submit(["y"] * 15))
        await batcher.stop()
        return requests, results

    requests, results = asyncio.run(scenario())
    assert results == [[t.upper() for t in texts] for texts in requests]
    assert max(len(b) for b in batches[:2]) > 3  # texts of several requests in one forward pass
    assert all(len(b) <= 8 and len(b) * max(map(len, b)) <= 40 for b in batches)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_url")


ANSWER = {"label": "pos", "confidence": 0.9, "probabilities": {"neg": 0.1, "pos": 0.9}, "truncated": False, "ood": None}


@pytest.mark.parametrize("policy", ["redacted", "hash", "none"])
def test_the_log_keeps_no_raw_text_on_either_database(log_url, policy):
    log = RequestLog(log_url, text_policy=policy, salt="fixed")
    request_id = f"req-{policy}"
    log.record(request_id=request_id, endpoint="predict", key_id="k1", status=200, latency_ms=3.0, model_sha256="ab",
               texts=["mail bob.smith@example.com now"], answers=[ANSWER])
    log.flush()
    with log.engine.connect() as connection:
        stored = connection.execute(text("select text, text_sha256, text_chars from trustfm_predictions "
                                         "where request_id = :r"), {"r": request_id}).one()
    assert stored[0] == ("mail <EMAIL> now" if policy == "redacted" else None)
    if policy == "none":
        assert stored[1] is None
    else:
        assert len(stored[1]) == 64 and stored[1] == log.text_hashes(["mail bob.smith@example.com now"])[0]
    assert stored[2] == len("mail bob.smith@example.com now")
    assert log.add_feedback(request_id=request_id, position=0, true_label="neg", key_id="k1")
    assert not log.add_feedback(request_id=request_id, position=5, true_label="neg", key_id="k1")
    with pytest.raises(ConfigError, match="already given"):
        log.add_feedback(request_id=request_id, position=0, true_label="neg", key_id="k1")
    log.close()


def test_an_unreachable_database_is_one_clear_error_without_the_password():
    with pytest.raises(ConfigError, match="cannot open the database") as error:
        RequestLog("postgresql+psycopg://user:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(error.value)


def test_a_nul_character_is_logged_on_postgresql_too(log_url):
    # found by Schemathesis: PostgreSQL's text type cannot hold U+0000, and the request got a 500
    log = RequestLog(log_url, text_policy="redacted")
    log.record(request_id="nul", endpoint="predict", key_id=None, status=200, latency_ms=1.0, model_sha256=None,
               texts=["a\x00b"], answers=[ANSWER])
    log.flush()
    with log.engine.connect() as connection:
        assert connection.execute(text("select text from trustfm_predictions where request_id = 'nul'")).scalar() == \
            "a\ufffdb"
    log.close()


def test_concurrent_requests_share_one_commit_and_a_full_backlog_keeps_hashes_only(tmp_path):
    import threading

    log = RequestLog(f"sqlite:///{tmp_path / 'log.db'}", text_policy="redacted", redact_backlog_texts=30)
    commits = []
    from sqlalchemy import event

    event.listen(log.engine, "commit", lambda connection: commits.append(1))
    barrier = threading.Barrier(20)

    def client(i):
        barrier.wait()
        log.record(request_id=f"r{i}", endpoint="predict", key_id=None, status=200, latency_ms=1.0,
                   model_sha256=None, texts=[f"call 415-555-01{i:02d} now", "fine"], answers=[ANSWER, ANSWER])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.flush()
    with log.engine.connect() as connection:
        rows = connection.execute(text("select text, text_sha256 from trustfm_predictions")).all()
    log.close()
    assert len(rows) == 40 and all(len(h) == 64 for _, h in rows)  # every acknowledged text is in the log
    assert len(commits) < 20  # requests that arrived together were committed together
    redacted = [t for t, _ in rows if t is not None]
    assert len(redacted) == 30 and log.unredacted_texts == 10  # beyond the backlog: hash only, and counted
    assert not any("555" in t for t in redacted) and "call <PHONE> now" in redacted
