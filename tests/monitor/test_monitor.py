"""Monitoring as users run it: a live ``trustfm serve`` writes the log, ``trustfm monitor`` reads it back, alerts
reach a real HTTP receiver on loopback, and the re-audit agrees with scikit-learn on the served answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from conftest import Server, make_rows, post_json, run_cli, set_flags
from monitor.test_alerts import _Receiver

WINDOW = 60


@pytest.fixture(scope="module")
def monitored(parent_run, tmp_path_factory):
    """A served copy of the parent run after 3 windows of in-distribution traffic (all with feedback) and 2 of
    long, off-topic texts; returns (run, answers with their true labels)."""
    run = tmp_path_factory.mktemp("monitored") / "run"
    shutil.copytree(parent_run, run)
    assert run_cli(["report", str(run)]).returncode == 0
    key = run_cli(["serve", "keys", "create", str(run), "--name", "app"]).stdout.strip()
    server = Server(run)
    answered = []
    try:
        rows = make_rows(3 * WINDOW, seed=7)
        for start in range(0, len(rows), 20):
            batch = rows[start:start + 20]
            response = post_json(server, "/v1/predict", {"texts": [r["text"] for r in batch],
                                                         "groups": [r["group"] for r in batch]}, key=key)
            assert response.status_code == 200, response.text
            body = response.json()
            for position, (row, answer) in enumerate(zip(batch, body["predictions"])):
                feedback = post_json(server, "/v1/feedback", {"request_id": body["request_id"], "position": position,
                                                              "label": row["label"]}, key=key)
                assert feedback.status_code == 201, feedback.text
                answered.append((row["label"], answer))
        shifted = [" ".join(["the quarterly filing lists revenue and depreciation schedules"] * 6)
                   + f" item {i}" for i in range(2 * WINDOW)]
        for start in range(0, len(shifted), 30):
            assert post_json(server, "/v1/predict", {"texts": shifted[start:start + 30]}, key=key).status_code == 200
    finally:
        server.stop()  # flushes the log: every text is committed and redacted
    return run, answered


def test_monitor_judges_windows_alerts_the_webhook_and_reaudits(monitored, tmp_path):
    run, answered = monitored
    receiver = _Receiver(failures=1)
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(json.dumps({"rules": [
        {"name": "longer-texts", "metric": "length_psi", "above": 1.0, "windows": 2, "severity": "critical"},
        {"name": "ood-wording", "metric": "embedding_mmd_p", "below": 0.01}],
        "webhook": {"url": receiver.url, "backoff_s": 0.05}}))
    try:
        done = run_cli(["monitor", run, "--window", WINDOW, "--alerts", alerts, "--reaudit", "--format", "json"])
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kind"] == "monitoring" and [w["n"] for w in result["windows"]] == [WINDOW] * 5
    in_dist, shifted = result["windows"][:3], result["windows"][3:]
    assert all(w["length_psi"] < 1.0 for w in in_dist) and all(w["length_psi"] > 1.0 for w in shifted)
    assert all(w["feedback"] == WINDOW and w["accuracy"] is not None for w in in_dist)
    assert in_dist[0]["group_source"] == "request" and set(in_dist[0]["group_counts"]) == {"a", "b"}
    # the critical rule needs two shifted windows in a row: it fires once, at the fifth window
    fired = [(a["rule"], a["status"], a["window_end"]) for a in result["alerts"] if a["rule"] == "longer-texts"]
    assert fired == [("longer-texts", "firing", shifted[1]["end"])]
    assert "longer-texts" in result["active_alerts"]
    got = [(r["rule"], r["status"]) for r in receiver.received]
    assert ("longer-texts", "firing") in got  # delivered after one 503, retried
    # the re-audit is scikit-learn's accuracy and macro-F1 on the labelled answers the service gave
    truth = [label for label, _ in answered]
    said = [answer["label"] for _, answer in answered]
    reaudit = result["reaudit"]
    assert reaudit["n"] == len(answered)
    assert reaudit["performance"]["accuracy"]["value"] == pytest.approx(accuracy_score(truth, said))
    assert reaudit["performance"]["macro_f1"]["value"] == pytest.approx(f1_score(truth, said, average="macro"))
    assert {g["group"] for g in reaudit["fairness"]["slices"][0]["groups"]} == {"a", "b"}
    # and it has its own page beside the training report, showing the same numbers
    page = (run / "monitoring" / "reaudit.html").read_text(encoding="utf-8")
    saved = json.loads((run / "monitoring" / "reaudit.json").read_text(encoding="utf-8"))
    assert saved["n"] == len(answered) and saved["performance"] == reaudit["performance"]
    assert f"{accuracy_score(truth, said):.3f}" in page and "Fairness on labelled production traffic" in page
    assert "<svg" in page and "request log sqlite" in page
    # a second call has nothing new: one clear line, exit code 2
    again = run_cli(["monitor", run, "--window", WINDOW])
    assert again.returncode == 2 and "no complete window" in again.stderr and "Traceback" not in again.stderr
    # the report plots the windows
    assert run_cli(["report", run]).returncode == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="monitoring"' in html and "longer-texts" in html


def test_a_log_of_another_model_and_a_bad_rule_are_one_clear_line(monitored, parent_run, tmp_path):
    run, _ = monitored
    other = tmp_path / "other"
    shutil.copytree(parent_run, other)
    weights = next((other / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # other weights: another model
    weights.write_bytes(bytes(data))
    log = f"sqlite:///{run / 'serving' / 'requests.db'}"
    refused = run_cli(["monitor", other, "--log", log, "--window", WINDOW])
    assert refused.returncode == 2 and "holds answers of another model" in refused.stderr, refused.stderr
    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - {name: x, metric: accuracy_drop, below: 0.8}\n")
    bad = run_cli(["monitor", run, "--alerts", rules])
    assert bad.returncode == 2 and "unknown metric 'accuracy_drop'" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_reference_profile_is_built_once_and_matches_the_model(monitored):
    from trustfm.monitor.reference import load_reference

    run, _ = monitored
    reference = load_reference(run, build_missing=False)
    profile = reference.profile
    assert profile.n == len(reference.confidences) and abs(sum(profile.class_proportions) - 1) < 1e-9
    assert np.all(np.diff(reference.confidences.values) >= 0)
    assert reference.embeddings.shape[1] == profile.embedding_dim == reference.embedding_cov.shape[0]


def test_adjust_folds_a_fitted_temperature_and_bias_into_a_new_servable_run(monitored, tmp_path):
    from trustfm.models.predictor import Predictor
    from trustfm.monitor.adjust import apply_adjustment

    run, answered = monitored
    out = tmp_path / "adjusted"
    done = run_cli(["adjust", run, "-o", out, "--format", "json"])
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["feedback_rows"] == len(answered) and record["temperature"] > 0
    assert record["after"]["log_loss"] <= record["before"]["log_loss"] + 0.05  # cross-fitted, so not guaranteed
    # the adjusted head is the fitted map applied to the parent's outputs
    texts = [r["text"] for r in make_rows(40, seed=9)]
    parent, child = Predictor.from_run(run).predict_proba(texts), Predictor.from_run(out).predict_proba(texts)
    bias = np.array(list(record["bias"].values()))
    assert np.abs(child - apply_adjustment(parent, record["temperature"], bias)).max() < 1e-4
    info = json.loads((out / "run.json").read_text())
    assert info["adjustment"]["parent"] == str(run.resolve()) and (out / "results" / "performance.json").is_file()
    assert info["model_sha256"] != json.loads((run / "run.json").read_text())["model_sha256"]
    # redeploy: the adjusted run serves like any run
    assert run_cli(["report", out]).returncode == 0
    key = run_cli(["serve", "keys", "create", out, "--name", "app"]).stdout.strip()
    server = Server(out)
    try:
        assert post_json(server, "/v1/predict", {"texts": texts[:3]}, key=key).status_code == 200
    finally:
        server.stop()
    too_few = run_cli(["adjust", out, "-o", tmp_path / "again"])  # the new model has no feedback yet
    assert too_few.returncode == 2 and "feedback-labelled answers" in too_few.stderr


def test_retrain_joins_feedback_to_the_training_rows_and_keeps_the_test_split(monitored, tmp_path):
    run, answered = monitored
    out = tmp_path / "retrained"
    done = run_cli(["retrain", run, "-o", out, "--format", "json"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["feedback"]["rows"] == len(answered) and result["feedback"]["skipped"] == 0
    parent_info = json.loads((run / "run.json").read_text())
    child_info = json.loads((out / "run.json").read_text())
    assert child_info["rows"]["train"] == parent_info["rows"]["train"] + len(answered)
    assert child_info["rows"]["test"] == parent_info["rows"]["test"]
    assert child_info["retraining"]["parent"] == str(run.resolve())
    assert (out / "monitoring" / "reference.json").is_file()  # saved at training time


def test_feedback_that_repeats_evaluation_rows_is_left_out_and_counted(parent_run, tmp_path):
    """273 verbatim test rows in the feedback raised a retrained model's test accuracy for no reason."""
    from trustfm.audit.context import AuditContext
    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.monitor.retrain import write_feedback_data
    from trustfm.serve.requestlog import RequestLog

    data = AuditContext(parent_run).data
    evaluation = [data.test.texts[0], data.test.texts[1].upper() + " !", data.validation.texts[0]]  # exact, normalised
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    log = RequestLog(log_url, text_policy="redacted")
    model = model_fingerprint(model_weight_hashes(parent_run / "model"))
    answer = {"label": "pos", "probabilities": {"neg": 0.3, "pos": 0.7}, "truncated": False, "ood": None}
    fresh = [f"a brand new production sentence number {i}" for i in range(25)]
    for i, text in enumerate(fresh + evaluation):
        log.record(request_id=f"r{i}", endpoint="predict", key_id=None, status=200, latency_ms=1.0,
                   model_sha256=model, texts=[text], answers=[answer])
        assert log.add_feedback(request_id=f"r{i}", position=0, true_label="pos", key_id=None)
    log.close()
    feedback = write_feedback_data(parent_run, log_url=log_url, output=tmp_path / "feedback.csv")
    assert feedback.rows == 25 and feedback.evaluation_duplicates == 3
    written = (tmp_path / "feedback.csv").read_text()
    assert all(text not in written for text in evaluation[::2])


def test_a_dp_retrain_is_refused_past_the_parent_datasets_budget(tiny_config, tmp_path):
    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.serve.requestlog import RequestLog

    ledger = tmp_path / "ledger.jsonl"
    parent = tmp_path / "dp-parent"
    overrides = {**tiny_config, "train.epochs": 1, "privacy.dp": {"epsilon": 3.0}, "privacy.total_epsilon": 5.0,
                 "privacy.ledger": str(ledger), "output_dir": str(parent)}
    assert run_cli(["train", "--quiet", *set_flags(overrides)]).returncode == 0
    # production answers of the DP model, with feedback, written as the service writes them
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    log = RequestLog(log_url, text_policy="redacted")
    model = model_fingerprint(model_weight_hashes(parent / "model"))
    answer = {"label": "pos", "probabilities": {"neg": 0.3, "pos": 0.7}, "truncated": False, "ood": None}
    for i, row in enumerate(make_rows(30, seed=5)):
        log.record(request_id=f"r{i}", endpoint="predict", key_id=None, status=200, latency_ms=1.0,
                   model_sha256=model, texts=[row["text"]], answers=[answer])
        assert log.add_feedback(request_id=f"r{i}", position=0, true_label=row["label"], key_id=None)
    log.close()
    refused = run_cli(["retrain", parent, "-o", tmp_path / "dp-child", "--from-log", log_url])
    assert refused.returncode == 2 and "total 5" in refused.stderr, refused.stderr
    assert not (tmp_path / "dp-child" / "model").exists()
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [e["status"] for e in entries] == ["settled"]  # the parent's spend only; nothing reserved for the child


def test_the_server_runs_the_monitor_in_the_background_and_publishes_its_gauges(monitored, tmp_path):
    import time

    import httpx

    run, _ = monitored
    key = run_cli(["serve", "keys", "create", run, "--name", "background"]).stdout.strip()
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("rules:\n  - {name: long-texts, metric: length_psi, above: 1.0}\n")
    server = Server(run, "--monitor-every", "1s", "--monitor-window", "20", "--alerts", alerts)
    try:
        texts = [" ".join(["an unusually long and repetitive production sentence"] * 8) for _ in range(20)]
        assert post_json(server, "/v1/predict", {"texts": texts}, key=key).status_code == 200
        deadline, metrics = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{server.url}/metrics").text
            if 'trustfm_alert_active{alert="long-texts",severity="warning"} 1.0' in metrics:
                break
            time.sleep(0.5)
    finally:
        code, output = server.stop()
    assert 'trustfm_alert_active{alert="long-texts",severity="warning"} 1.0' in metrics, output[-2000:]
    assert 'trustfm_monitor_metric{metric="length_psi"}' in metrics
    assert any("alert firing: long-texts" in line for line in output.splitlines())


def test_time_windows_are_aligned_to_the_clock_and_hold_every_answer(monitored, tmp_path):
    from datetime import datetime, timedelta, timezone

    from trustfm.monitor.run import NoCompleteWindow, monitor_run

    run, answered = monitored
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "results" / "monitoring.json").unlink(missing_ok=True)
    log = f"sqlite:///{run / 'serving' / 'requests.db'}"
    with pytest.raises(NoCompleteWindow, match="no complete window"):
        monitor_run(copy, log_url=log, window="1d", now=datetime(2000, 1, 1, tzinfo=timezone.utc))
    later = datetime.now(timezone.utc) + timedelta(days=2)
    result, new = monitor_run(copy, log_url=log, window="1d", now=later)
    assert new == len(result.windows) >= 2  # the traffic's day, then the empty days up to now
    assert all(w.start.endswith("00:00:00+00:00") for w in result.windows)
    assert sum(w.n for w in result.windows) >= len(answered) + 2 * WINDOW
    assert any(w.n == 0 and "empty window" in w.notes[0] for w in result.windows)
    with pytest.raises(NoCompleteWindow):  # nothing new since
        monitor_run(copy, log_url=log, window="1d", now=later)


def test_a_window_judged_before_redaction_caught_up_is_judged_again_and_new_alerts_are_told_apart(parent_run,
                                                                                                   tmp_path):
    from sqlalchemy import create_engine, text

    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.serve.requestlog import RequestLog

    run = tmp_path / "run"
    shutil.copytree(parent_run, run)
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    model = model_fingerprint(model_weight_hashes(run / "model"))
    answer = {"label": "pos", "confidence": 0.7, "probabilities": {"neg": 0.3, "pos": 0.7}, "truncated": False,
              "ood": None}
    rows = make_rows(40, seed=11)

    def write(batch, offset):
        log = RequestLog(log_url, text_policy="hash")  # as if redaction had not caught up: no text yet
        for i, row in enumerate(batch, start=offset):
            log.record(request_id=f"r{i}", endpoint="predict", key_id=None, status=200, latency_ms=1.0,
                       model_sha256=model, texts=[row["text"]], answers=[answer])
        log.close()

    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("rules:\n  - {name: conf, metric: confidence_psi, above: 0.0}\n")
    write(rows[:20], 0)
    first = run_cli(["monitor", run, "--log", log_url, "--window", "20", "--alerts", alerts, "--format", "json"])
    assert first.returncode == 0, first.stderr
    window = json.loads(first.stdout)["windows"][0]
    assert window["embedding_mmd_p"] is None and window["texts_missing"] == 20
    engine = create_engine(log_url)
    with engine.begin() as connection:  # the redactor catches up: the texts arrive
        for i, row in enumerate(rows[:20]):
            connection.execute(text("UPDATE trustfm_predictions SET text = :t WHERE request_id = :r"),
                               {"t": row["text"], "r": f"r{i}"})
    engine.dispose()
    write(rows[20:], 20)
    second = run_cli(["monitor", run, "--log", log_url, "--window", "20", "--alerts", alerts])
    assert second.returncode == 0, second.stderr
    result = json.loads((run / "results" / "monitoring.json").read_text())
    again = result["windows"][0]
    assert again["embedding_mmd_p"] is not None and again["texts_missing"] == 0
    assert any("judged again" in note for note in again["notes"])
    assert result["new_events"] == 0 and "1 earlier alert event(s)" in second.stdout and "new: alert" not in second.stdout
