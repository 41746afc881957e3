"""The request log read back for one model, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import numpy as np
import pytest

from trustfm.errors import ConfigError
from trustfm.monitor.logreader import read_log
from trustfm.serve.requestlog import RequestLog


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_url")


def _answer(label, p_pos, **extra):
    return {"label": label, "probabilities": {"neg": 1 - p_pos, "pos": p_pos}, "truncated": False, "ood": None,
            "logged_probabilities": {"neg": 1 - p_pos, "pos": p_pos}, **extra}


def test_answers_feedback_groups_and_other_models_come_back_in_order(log_url):
    # the PostgreSQL database is shared by the session: this test's models and requests get names of their own
    import uuid

    tag = uuid.uuid4().hex[:8]
    m1, m2 = tag + "m1", tag + "m2"
    log = RequestLog(log_url, text_policy="redacted", salt="s")
    log.record(request_id="a" + tag, endpoint="predict", key_id="k", status=200, latency_ms=1.0, model_sha256=m1,
               texts=["fine film", "mail x@example.com"], answers=[_answer("pos", 0.9), _answer("neg", 0.2)],
               groups=["g1", None])
    log.record(request_id="b" + tag, endpoint="predict", key_id="k", status=200, latency_ms=1.0, model_sha256=m1,
               texts=["dull"], answers=[_answer(None, 0.45, model_label="neg", rule="abstain-low-confidence")])
    log.record(request_id="c" + tag, endpoint="predict", key_id="k", status=200, latency_ms=1.0, model_sha256=m2,
               texts=["other model"], answers=[_answer("pos", 0.8)])
    log.record(request_id="d" + tag, endpoint="explain", key_id="k", status=200, latency_ms=None, model_sha256=m1)
    assert log.add_feedback(request_id="a" + tag, position=1, true_label="neg", key_id="k")
    log.close()  # drains the redactor
    logged, others = read_log(log_url, model_sha256=m1, label_names=["neg", "pos"])
    assert {h: n for h, n in others.items() if h.startswith(tag)} == {m2: 1}
    assert logged.request_ids == ["a" + tag, "a" + tag, "b" + tag]
    assert logged.texts == ["fine film", "mail <EMAIL>", "dull"]
    assert logged.predicted.tolist() == [1, 0, 0] and logged.true_label.tolist() == [-1, 0, -1]
    assert logged.abstained.tolist() == [False, False, True] and logged.groups == ["g1", None, None]
    assert np.allclose(logged.confidence, [0.9, 0.8, 0.55]) and np.all(np.isnan(logged.ood))
    assert all(t.tzinfo is not None for t in logged.received_at)
    with pytest.raises(ConfigError, match="holds answers of another model"):
        read_log(log_url, model_sha256=tag + "m3", label_names=["neg", "pos"])


def test_a_missing_sqlite_log_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="no request log at"):
        read_log(f"sqlite:///{tmp_path / 'none.db'}", model_sha256="m", label_names=["a", "b"])
