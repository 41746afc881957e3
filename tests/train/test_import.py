"""``trustfm import``: a checkpoint trained elsewhere becomes a run folder that answers exactly as the checkpoint
does, says what is unknown, and goes through audit, report, verify, compress and serve."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import Server, make_rows, post_json, run_cli, write_csv
from tiny_families import build_tiny_model


def _checkpoint(family: str, folder, *, id2label=None):
    """A sequence-classification checkpoint of ``family`` saved as a user of Transformers would save one."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    base = build_tiny_model(family, folder.parent / f"{folder.name}-base")
    config = AutoConfig.from_pretrained(base)
    config.num_labels = 2
    config.id2label = id2label or {0: "neg", 1: "pos"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    tokenizer = AutoTokenizer.from_pretrained(base)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(base, config=config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model.eval(), tokenizer


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    checkpoint, model, tokenizer = _checkpoint("roberta", root / "checkpoint")
    test = write_csv(root / "test.csv", make_rows(60, seed=5))
    train = write_csv(root / "train.csv", make_rows(80, seed=6))
    done = run_cli(["import", checkpoint, "-o", root / "run", "--test-data", test, "--data", train,
                    "--group-column", "group", "--quiet", "--set", "evaluate.bootstrap_samples=30",
                    "--set", "fairness.min_group_size=5"])
    assert done.returncode == 0, done.stderr
    return root, checkpoint, model, tokenizer


def test_an_imported_checkpoint_answers_exactly_as_it_does_and_its_bytes_are_kept(imported):
    from trustfm.data.prepare import file_sha256
    from trustfm.models.predictor import Predictor

    root, checkpoint, model, tokenizer = imported
    texts = ["a great product, fast delivery", "broken and late", "ok"]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        expected = torch.softmax(model(**batch).logits, dim=-1).numpy()
    np.testing.assert_allclose(Predictor.from_run(root / "run").predict_proba(texts), expected, atol=1e-5)
    record = json.loads((root / "run" / "run.json").read_text())
    assert record["model_sha256"]["model.safetensors"] == file_sha256(checkpoint / "model.safetensors")
    assert record["imported"]["architecture"] == "RobertaForSequenceClassification"
    assert "training procedure (epochs, optimiser, seed)" in record["imported"]["unknown"]
    assert record["label_names"] == ["neg", "pos"] and record["rows"]["train"] == 80


def test_the_imported_run_is_audited_reported_verified_and_served(imported):
    root, _, _, _ = imported
    run = root / "run"
    audited = run_cli(["audit", run, "--all", "--max-examples", "10", "--format", "json"])
    assert audited.returncode == 0, audited.stderr
    statuses = {a["audit"]: a for a in json.loads(audited.stdout)["audits"]}
    assert statuses["fairness"]["status"] == statuses["data_quality"]["status"] == "ran"
    assert statuses["membership"]["status"] == "not applicable"  # the test file is not the training file's kind
    assert run_cli(["report", run]).returncode == 0
    html = (run / "report.html").read_text()
    assert 'id="imported"' in html and "Unknown" in html and "differential privacy" in html
    card = (run / "model_card.md").read_text()
    assert "not trained by trustfm" in card and "Training: unknown" in card
    assert run_cli(["verify", run / "report.html"]).returncode == 0
    server = Server(run, "--no-auth")
    try:
        answer = post_json(server, "/v1/predict", {"texts": ["a great product"]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in ("neg", "pos")
    finally:
        server.stop()
    child = root / "int8"
    done = run_cli(["compress", run, "--method", "onnx-int8", "--min-agreement", "0", "-o", child])
    assert done.returncode == 0, done.stderr
    # no validation split: the student's best epoch is chosen on its own held-out rows, never on the test split
    student = root / "student"
    done = run_cli(["compress", run, "--method", "distill", "--layers", "1", "--epochs", "1", "--min-agreement", "0",
                    "-o", student])
    assert done.returncode == 0, done.stderr
    training = json.loads((student / "run.json").read_text())["compression"]["training"]
    assert training["selected_on"].startswith("8 of the student's rows held out") and training["rows"] == 72


def test_without_training_data_the_training_audits_say_why_and_default_label_names_map_to_indices(tmp_path):
    checkpoint, _, _ = _checkpoint("bert", tmp_path / "checkpoint", id2label={0: "LABEL_0", 1: "LABEL_1"})
    rows = [{**r, "label": "1" if r["label"] == "pos" else "0"} for r in make_rows(60, seed=7)]
    test = write_csv(tmp_path / "test.csv", rows)
    done = run_cli(["import", checkpoint, "-o", tmp_path / "run", "--test-data", test, "--quiet",
                    "--set", "evaluate.bootstrap_samples=20"])
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["label_names"] == ["0", "1"] and "LABEL_0..LABEL_1" in record["imported"]["classes"]
    assert "training data" in record["imported"]["unknown"]
    audited = json.loads(run_cli(["audit", tmp_path / "run", "--all", "--max-examples", "10", "--format",
                                  "json"]).stdout)
    reasons = {a["audit"]: a.get("reason") or "" for a in audited["audits"]}
    assert "imported without them" in reasons["membership"] and "imported without them" in reasons["data_quality"]
    refused = run_cli(["compress", tmp_path / "run", "--method", "distill", "-o", tmp_path / "student"])
    assert refused.returncode == 2 and "--unlabelled" in refused.stderr


def test_what_is_not_a_classifier_or_holds_pickle_only_is_one_clear_line(tmp_path):
    base = build_tiny_model("bert", tmp_path / "encoder")  # a bare encoder, no classification head
    test = write_csv(tmp_path / "test.csv", make_rows(20))
    bare = run_cli(["import", base, "-o", tmp_path / "a", "--test-data", test])
    assert bare.returncode == 2 and "not a sequence classifier" in bare.stderr
    checkpoint, model, _ = _checkpoint("bert", tmp_path / "checkpoint")
    pickled = tmp_path / "pickled"
    shutil.copytree(checkpoint, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    refused = run_cli(["import", pickled, "-o", tmp_path / "b", "--test-data", test])
    assert refused.returncode == 2 and "pickle" in refused.stderr and not (tmp_path / "b").exists()
    wrong = write_csv(tmp_path / "wrong.csv", [{**r, "label": "maybe"} for r in make_rows(20)])
    mislabelled = run_cli(["import", checkpoint, "-o", tmp_path / "c", "--test-data", wrong])
    assert mislabelled.returncode == 2 and "['maybe'] are not classes of the checkpoint" in mislabelled.stderr


class _PipelineApp:
    """A plain FastAPI app wrapping a Transformers text-classification pipeline, on a real loopback port: the KServe
    v2 inference protocol, and a JSON API of its own (for the template protocol). It counts the texts it is sent
    and requires a bearer token."""

    def __init__(self, checkpoint, token: str):
        import threading

        import uvicorn
        from fastapi import FastAPI, Header, HTTPException
        from transformers import pipeline

        from conftest import free_port

        classify = pipeline("text-classification", model=str(checkpoint), top_k=None)
        app, self.received = FastAPI(), []

        def scores(texts):
            self.received.extend(texts)
            return [{item["label"]: item["score"] for item in row} for row in classify(list(texts))]

        def check(authorization):
            if authorization != f"Bearer {token}":
                raise HTTPException(401, "bad token")

        @app.post("/v2/models/{name}/infer")
        def infer(name: str, body: dict, authorization: str = Header(None)):
            check(authorization)
            rows = scores(body["inputs"][0]["data"])
            return {"model_name": name, "outputs": [{"name": "probabilities", "shape": [len(rows), 2],
                                                     "datatype": "FP32",
                                                     "data": [r[c] for r in rows for c in ("neg", "pos")]}]}

        @app.post("/classify")
        def own(body: dict, authorization: str = Header(None)):
            check(authorization)
            return {"results": [{"scores": s} for s in scores(body["documents"])]}

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        import httpx

        for _ in range(100):
            try:
                httpx.get(f"{self.url}/docs", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _disparities(run):
    fairness = json.loads((run / "results" / "fairness.json").read_text())
    robustness = json.loads((run / "results" / "robustness.json").read_text())
    return fairness["slices"][0]["disparities"], [t["flip_rate"] for t in robustness["tests"]]


def test_a_model_behind_an_endpoint_is_audited_through_its_answers_with_the_same_numbers(imported, tmp_path,
                                                                                        monkeypatch):
    """KServe v2, a template of a plain JSON API, and another trustfm service: the same predictions give the same
    fairness and robustness numbers as auditing the model from its folder; each text is sent once."""
    root, checkpoint, _, _ = imported
    test, flags = root / "test.csv", ["--group-column", "group", "--quiet", "--set", "evaluate.bootstrap_samples=30",
                                      "--set", "fairness.min_group_size=5"]
    audit = ["--max-examples", "10", "--format", "json"]
    assert run_cli(["audit", root / "run", "--all", *audit]).returncode == 0
    expected = _disparities(root / "run")
    monkeypatch.setenv("ENDPOINT_TOKEN", "s3cret-token")
    app = _PipelineApp(checkpoint, "s3cret-token")
    template = tmp_path / "template.yaml"
    template.write_text('path: /classify\nrequest: {documents: "{{texts}}"}\nprobabilities: "results[*].scores"\n')
    try:
        for name, extra in (("kserve", ["--protocol", "kserve-v2", "--endpoint-config", _kserve(tmp_path)]),
                            ("template", ["--protocol", "template", "--endpoint-config", template])):
            run = tmp_path / name
            done = run_cli(["import", "--endpoint", app.url, "--auth-env", "ENDPOINT_TOKEN", "--classes", "neg,pos",
                            "-o", run, "--test-data", test, *extra, *flags])
            assert done.returncode == 0, done.stderr
            audited = run_cli(["audit", run, "--all", *audit])
            assert audited.returncode == 0, audited.stderr
            summary = json.loads(audited.stdout)
            statuses = {a["audit"]: a["status"] for a in summary["audits"]}
            assert statuses["fairness"] == statuses["robustness"] == statuses["attacks"] == "ran"
            assert statuses["explanations"] == "not applicable"  # gradients: a black box has none
            assert _disparities(run) == expected, name
            assert summary["endpoint"]["cache_hits"] > 0 and summary["endpoint"]["requests"] > 0
            assert "s3cret-token" not in json.dumps([p.read_text() for p in run.rglob("*.json")] + [done.stderr])
        assert len(app.received) > 0
    finally:
        app.close()
    # trustfm's own protocol: another trustfm service (its classes come from /v1/model)
    key = run_cli(["serve", "keys", "create", root / "run", "--name", "auditor"]).stdout.strip()
    monkeypatch.setenv("ENDPOINT_TOKEN", key)
    server = Server(root / "run")
    try:
        run = tmp_path / "trustfm"
        done = run_cli(["import", "--endpoint", server.url, "--auth-env", "ENDPOINT_TOKEN", "-o", run,
                        "--test-data", test, *flags])
        assert done.returncode == 0, done.stderr
        assert run_cli(["audit", run, "--all", *audit]).returncode == 0
        assert _disparities(run) == expected
    finally:
        server.stop()
    refused = run_cli(["serve", run, "--port", "0"])
    assert refused.returncode == 2 and "served where it lives" in refused.stderr


def _kserve(tmp_path):
    path = tmp_path / "kserve.yaml"
    path.write_text("model: tiny-roberta\ninput_name: text\noutput_name: probabilities\n")
    return path
