"""The inference service, run as users run it: ``trustfm serve`` on loopback, real HTTP, a real database."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from conftest import Server, free_port, run_cli
from conftest import post_json as _post


def server_run_name(server) -> str:
    return httpx.get(f"{server.url}/openapi.json").json()["info"]["description"].rsplit(" ", 1)[-1].rstrip(".")


PLANTED = ["write to jane.doe@example.com about it, terrible", "call 415-555-0132 now, it was great"]


@pytest.fixture(scope="module")
def served_run(parent_run, tmp_path_factory):
    """A copy of the parent run with a signed report and one API key (returned with the run folder)."""
    run = tmp_path_factory.mktemp("served") / "run"
    shutil.copytree(parent_run, run)
    assert run_cli(["report", str(run)]).returncode == 0
    created = run_cli(["serve", "keys", "create", str(run), "--name", "alice"])
    assert created.returncode == 0, created.stderr
    return run, created.stdout.strip()


@pytest.fixture(scope="module")
def server(served_run, postgres_url):
    run, _ = served_run
    server = Server(run, "--log-url", postgres_url)
    yield server
    if server.process.poll() is None:
        server.stop()


def test_predict_needs_a_key_and_answers_in_order(served_run, server):
    _, key = served_run
    assert _post(server, "/v1/predict", {"texts": ["good"]}).status_code == 401
    assert _post(server, "/v1/predict", {"texts": ["good"]}, key="tfm_0000_wrong").status_code == 401
    response = _post(server, "/v1/predict", {"texts": ["good", "bad stuff", "fine"]}, key=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 3 and body["request_id"] == response.headers["x-request-id"]
    for prediction in body["predictions"]:
        assert prediction["label"] in prediction["probabilities"]
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    info = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": key}).json()
    assert info["classes"] == ["neg", "pos"] and info["format"] == "torch" and info["report_signed"]
    assert info["backend"] == "onnxruntime"  # auto: the checked ONNX export of the signed torch weights
    schema = httpx.get(f"{server.url}/openapi.json").json()
    schema["info"]["description"] = schema["info"]["description"].replace(server_run_name(server), "RUN")
    # the published contract, as committed: a change to it is a deliberate change of this file
    assert schema == json.loads((Path(__file__).parent / "openapi.json").read_text())


@pytest.mark.parametrize("case, body, headers, status", [
    ("empty list", {"texts": []}, {}, 422),
    ("an empty text", {"texts": ["fine", ""]}, {}, 422),
    ("a blank text", {"texts": ["  \n\t "]}, {}, 422),
    ("too many texts", {"texts": ["x"] * 300}, {}, 413),
    ("text too long", {"texts": ["a" * 20_000]}, {}, 413),
    ("body over 1 MB", {"texts": ["a" * 1_100_000]}, {}, 413),
    ("invalid JSON", b'{"texts": [oops', {}, 422),
    ("non-UTF-8 bytes", b'{"texts": ["\xff\xfe"]}', {}, 400),
    ("not a string", {"texts": [3]}, {}, 422),
    ("unknown field", {"texts": ["a"], "extra": 1}, {}, 422),
    ("wrong content type", b"hello", {"content-type": "text/plain"}, 415),
])
def test_bad_requests_get_a_clear_4xx(served_run, server, case, body, headers, status):
    response = _post(server, "/v1/predict", body, key=served_run[1], **headers)
    assert response.status_code == status, (case, response.text)
    assert set(response.json()) == {"error", "detail"} and response.json()["detail"]
    if case == "an empty text":
        assert "texts[1] is empty or blank" in response.json()["detail"]


def test_predict_and_explain_share_one_rule_for_empty_and_too_long_texts(served_run, server):
    key = served_run[1]
    for path, body in (("/v1/predict", {"texts": [" "]}), ("/v1/explain", {"text": " "})):
        response = _post(server, path, body, key=key)
        assert response.status_code == 422 and "empty or blank" in response.json()["detail"], path
    long = _post(server, "/v1/explain", {"text": "a" * 20_000}, key=key)
    assert long.status_code == 413 and long.json()["detail"].startswith("text has 20000 characters")


def test_personal_data_never_reaches_the_log_metrics_or_output(served_run, server, postgres_url):
    _, key = served_run
    response = _post(server, "/v1/predict", {"texts": PLANTED}, key=key)
    assert response.status_code == 200
    request_id = response.json()["request_id"]
    feedback = _post(server, "/v1/feedback", {"request_id": request_id, "position": 1, "label": "pos"}, key=key)
    assert feedback.status_code == 201
    assert _post(server, "/v1/feedback", {"request_id": request_id, "position": 1, "label": "pos"},
                 key=key).status_code == 409
    assert _post(server, "/v1/feedback", {"request_id": "nope", "label": "pos"}, key=key).status_code == 404
    engine = create_engine(postgres_url)
    deadline = time.monotonic() + 30
    with engine.connect() as connection:
        while True:  # redaction runs in batches behind the answer
            stored = [row[0] for row in connection.execute(text(
                "select text from trustfm_predictions where request_id = :r order by position"), {"r": request_id})]
            if None not in stored or time.monotonic() > deadline:
                break
            connection.rollback()
            time.sleep(0.2)
        labels = list(connection.execute(text("select true_label from trustfm_feedback where request_id = :r"),
                                         {"r": request_id}))
    engine.dispose()
    assert stored == ["write to <EMAIL> about it, terrible", "call <PHONE> now, it was great"]
    assert labels == [("pos",)]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "trustfm_predictions_total" in metrics and "trustfm_batch_size_texts_bucket" in metrics
    for secret in ("jane.doe", "example.com", "415-555", key):
        assert secret not in metrics


def test_a_revoked_key_is_refused_and_sigterm_stops_cleanly(served_run, tmp_path, postgres_url):
    import threading

    run, alice = served_run
    created = run_cli(["serve", "keys", "create", str(run), "--name", "bob"])
    bob = created.stdout.strip()
    server = Server(run, "--log-url", postgres_url)
    in_flight: dict = {}
    try:
        assert _post(server, "/v1/predict", {"texts": ["ok"]}, key=bob).status_code == 200
        assert run_cli(["serve", "keys", "revoke", str(run), "bob"]).returncode == 0
        assert _post(server, "/v1/predict", {"texts": ["ok"]}, key=bob).status_code == 401
        # a request in flight when SIGTERM arrives is answered and logged before the process exits
        worker = threading.Thread(target=lambda: in_flight.update(
            response=_post(server, "/v1/predict", {"texts": [f"text number {i} " * 20 for i in range(256)]},
                           key=alice)))
        worker.start()
        time.sleep(0.05)
    finally:
        code, output = server.stop()
    worker.join(timeout=60)
    # uvicorn finishes what is in flight, then re-raises the signal: killed by SIGTERM after a clean shutdown
    assert code in (0, -signal.SIGTERM)
    logged_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {line["message"].split(":")[0] for line in logged_lines} >= {"ready", "stopped"}
    assert all(set(line) == {"time", "level", "logger", "message"} for line in logged_lines)
    assert in_flight["response"].status_code == 200
    request_id = in_flight["response"].json()["request_id"]
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        logged = connection.execute(text("select count(*) from trustfm_predictions where request_id = :r"),
                                    {"r": request_id}).scalar()
    engine.dispose()
    assert logged == 256
    for secret in PLANTED[0].split()[2:3] + ["415-555", bob]:
        assert secret not in output
    listed = json.loads(run_cli(["serve", "keys", "list", str(run), "--format", "json"]).stdout)
    assert [k["name"] for k in listed] == ["alice"]
    assert "hash" not in json.dumps(listed) and bob not in (run / "serving" / "keys.json").read_text()


def test_rate_limit_and_explain(served_run, tmp_path):
    run, key = served_run
    config = tmp_path / "serve.yaml"
    config.write_text("rate_limit_per_minute: 2\nlog_text: hash\n", encoding="utf-8")
    server = Server(run, "--config", str(config), "--log-url", f"sqlite:///{tmp_path / 'log.db'}")
    try:
        explained = _post(server, "/v1/explain", {"text": "a good and fine thing"}, key=key)
        assert explained.status_code == 200, explained.text
        words = [a["word"] for a in explained.json()["attributions"]]
        assert words == ["a", "good", "and", "fine", "thing"]
        assert _post(server, "/v1/predict", {"texts": ["ok"]}, key=key).status_code == 200
        limited = _post(server, "/v1/predict", {"texts": ["ok"]}, key=key)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        server.stop()


def test_a_tampered_or_unsigned_model_is_not_served(served_run, tmp_path):
    run, _ = served_run
    tampered = tmp_path / "tampered"
    shutil.copytree(run, tampered)
    head = tampered / "model" / "head.safetensors"
    head.write_bytes(head.read_bytes()[:-1] + b"\x00")
    refused = run_cli(["serve", str(tampered), "--port", str(free_port())])
    assert refused.returncode == 2 and "head.safetensors is modified" in refused.stderr
    (tampered / "report.json").unlink()
    unsigned = run_cli(["serve", str(tampered), "--port", str(free_port())])
    assert unsigned.returncode == 2 and "no signed report" in unsigned.stderr
    # --unsigned skips the report, but the model must still match run.json
    forced = run_cli(["serve", str(tampered), "--unsigned", "--port", str(free_port())])
    assert forced.returncode == 2 and "differ(s) from the hashes recorded in run.json" in forced.stderr


def test_files_added_after_signing_are_reported_and_not_served(served_run, tmp_path):
    """An OOD detector saved after the report is not covered by its signature: verify names it, serve refuses it."""
    run, _ = served_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ood = tmp_path / "ood.csv"
    ood.write_text("sentence\n" + "".join(f"the central bank raised rates by {i} basis points\n" for i in range(40)))
    assert run_cli(["audit", "ood", copy, "--ood-data", ood, "--ood-text-column", "sentence"]).returncode == 0
    verified = run_cli(["verify", copy / "report.html", "--format", "json"])
    assert verified.returncode == 4
    added = {f["relative"] for f in json.loads(verified.stdout)["files"] if f["status"] == "added"}
    assert {"results/ood.json", "model/ood_detector.safetensors", "model/ood_detector.json"} <= added
    refused = run_cli(["serve", copy, "--port", free_port()])
    assert refused.returncode == 2 and "model/ood_detector" in refused.stderr and "not covered" in refused.stderr
    # the service's own state (keys, request log) and the report's files are not the signed evidence
    assert not any(rel.startswith("serving/") for rel in added)
    assert run_cli(["report", copy]).returncode == 0
    assert run_cli(["verify", copy / "report.html"]).returncode == 0


def test_a_failed_release_gate_refuses_the_service_unless_overridden(served_run, tmp_path):
    run, key = served_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    policy = tmp_path / "strict.yaml"
    policy.write_text("name: strict\nrules:\n  - accuracy > 1.0\n  - accuracy >= 0.1\n")
    assert run_cli(["gate", copy, "--policy", policy]).returncode == 4
    assert run_cli(["report", copy]).returncode == 0  # the verdict is signed with the numbers it judged
    refused = run_cli(["serve", copy, "--port", free_port()])
    assert refused.returncode == 4, refused.stderr
    assert "release gate 'strict' FAILED (accuracy > 1)" in refused.stderr and "--allow-failed-gate" in refused.stderr
    server = Server(copy, "--allow-failed-gate")
    try:
        info = httpx.get(f"{server.url}/v1/model", headers={"Authorization": f"Bearer {key}"}).json()
        assert info["gate"]["passed"] is False and info["gate"]["overridden"] is True
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "trustfm_gate_overridden 1.0" in metrics and "trustfm_gate_passed 0.0" in metrics
    finally:
        _, output = server.stop()
    assert "release gate 'strict' FAILED" in output and "allow_failed_gate" in output


def test_a_compressed_onnx_run_is_served(parent_run, tmp_path):
    from trustfm.compress.run import CompressionSettings, compress_run
    from trustfm.report import build_report

    child = tmp_path / "onnx"
    compress_run(parent_run, settings=CompressionSettings(method="onnx"), output_dir=child)
    build_report(child)
    server = Server(child, "--no-auth")
    try:
        response = _post(server, "/v1/predict", {"texts": ["good", "bad"]})
        assert response.status_code == 200
        assert httpx.get(f"{server.url}/v1/model").json()["format"] == "onnx"
    finally:
        server.stop()


def test_the_torch_backend_answers_as_the_onnx_export(served_run, server, tmp_path):
    run, key = served_run
    texts = ["good", "the delivery was slow and the support line never answered", "bad stuff", "fine"]
    exported = _post(server, "/v1/predict", {"texts": texts}, key=key).json()["predictions"]
    torch_server = Server(run, "--backend", "torch", "--log-url", f"sqlite:///{tmp_path / 'log.db'}")
    try:
        assert httpx.get(f"{torch_server.url}/v1/model", headers={"X-API-Key": key}).json()["backend"] == "torch"
        answered = _post(torch_server, "/v1/predict", {"texts": texts}, key=key).json()["predictions"]
    finally:
        torch_server.stop()
    for a, b in zip(exported, answered):
        assert a["label"] == b["label"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    bad = run_cli(["serve", str(run), "--backend", "tensorrt", "--port", str(free_port())])
    assert bad.returncode == 2 and "backend" in bad.stderr and "Traceback" not in bad.stderr


def _workers(parent: int) -> list[str]:
    """Process ids of uvicorn's workers under ``parent`` (not multiprocessing's resource tracker)."""
    import subprocess
    from pathlib import Path

    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout.split()
    workers = []
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:  # gone between ps and here (the killed worker): not a worker any more
            continue
        if b"resource_tracker" not in command:
            workers.append(pid)
    return workers


def test_a_killed_worker_is_replaced_and_no_acknowledged_request_is_lost(served_run, postgres_url):
    import os
    import threading

    run, key = served_run
    server = Server(run, "--workers", "2", "--log-url", postgres_url)
    acknowledged, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                response = _post(server, "/v1/predict", {"texts": ["steady load", "more text"]}, key=key)
            except httpx.TransportError:
                continue  # a request the killed worker held: never acknowledged
            if response.status_code == 200:
                acknowledged.append(response.json()["request_id"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(600):  # both workers load the model; wait for answers from the load first
            if len(acknowledged) >= 8:
                break
            time.sleep(0.1)
        workers = _workers(server.process.pid)
        served_before = len(acknowledged)
        os.kill(int(workers[0]), signal.SIGKILL)
        for _ in range(300):  # uvicorn's supervisor notices and starts a new worker
            alive = _workers(server.process.pid)
            if workers[0] not in alive and len(alive) == 2:
                break
            time.sleep(0.1)
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert served_before > 0 and len(acknowledged) > served_before
        after = _post(server, "/v1/predict", {"texts": ["after the kill"]}, key=key)
        assert after.status_code == 200
        alive = _workers(server.process.pid)
        assert workers[0] not in alive and len(alive) == 2
    finally:
        stop.set()
        server.stop()
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        logged = {row[0] for row in connection.execute(text("select request_id from trustfm_requests"))}
    engine.dispose()
    assert set(acknowledged) <= logged


def test_no_generated_request_gets_a_server_error(server, served_run):
    """Schemathesis draws requests from the live OpenAPI schema (a bounded number per operation): none gets a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/explain", "/v1/feedback", "/v1/model"}
    for operation in operations:

        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {served_run[1]}"}, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])

        check()


def test_the_state_store_and_limits_are_dependencies_a_test_can_replace(served_run, tmp_path):
    """Routes reach the keys and limits only through their dependencies: replacing them changes the service."""
    from fastapi.testclient import TestClient

    from trustfm.serve.app import create_app
    from trustfm.serve.deps import key_limits, key_store
    from trustfm.serve.keys import KeyStore
    from trustfm.serve.limits import LocalLimits
    from trustfm.serve.settings import ServeSettings

    run, alice = served_run
    app = create_app(run, ServeSettings(log_url=f"sqlite:///{tmp_path / 'log.db'}"))
    other_keys = KeyStore(tmp_path / "other-keys.json")
    carol = other_keys.create("carol")
    strict = LocalLimits(per_minute=60, budget=3, alert_texts=10, window_s=60, on_alert=lambda *a: None)
    app.dependency_overrides[key_store] = lambda: other_keys
    app.dependency_overrides[key_limits] = lambda: strict
    with TestClient(app) as client:
        def ask(key, texts):
            return client.post("/v1/predict", json={"texts": texts}, headers={"Authorization": f"Bearer {key}"})

        assert ask(alice, ["good"]).status_code == 401  # the run's own key file is not consulted
        assert ask(carol, ["good", "bad"]).status_code == 200
        refused = ask(carol, ["fine", "fine"])
        assert refused.status_code == 429 and refused.json()["error"] == "query_budget_exhausted"
    assert strict.totals[carol.split("_")[1]] == 2
