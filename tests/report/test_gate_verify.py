"""Policy gate and tamper evidence, as a CI pipeline would use them."""

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli


def run(*args):
    return run_cli([str(a) for a in args], capture_output=True, text=True, env=dict(os.environ))


@pytest.fixture(scope="module")
def reported_run(tiny_model_dir, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "run"
    result = run("train", "--data", tiny_data, "--model", tiny_model_dir, "--group-column", "group", "--epochs", "2",
                 "--learning-rate", "3e-3", "--max-length", "32", "--quiet", "--set", "evaluate.bootstrap_samples=100",
               "--set", "fairness.min_group_size=5",
                 "-o", out)
    assert result.returncode == 0, result.stderr
    assert run("audit", "fairness", out, "--sensitive", "group").returncode == 0
    assert run("report", out).returncode == 0
    return out


def test_gate_passes_fails_and_refuses_unknown_metrics(reported_run, tmp_path):
    metrics = json.loads(run("gate", reported_run, "--list", "--format", "json").stdout)
    assert {"accuracy", "accuracy.low", "performance.macro_f1.high", "fairness.group.dp_difference",
            "fairness.group.a.selection_rate.low", "representation.flagged"} <= set(metrics)
    accuracy = metrics["accuracy"]
    passing = tmp_path / "pass.yaml"
    passing.write_text(f"name: ok\nrules:\n  - accuracy >= {accuracy - 0.01}\n"
                       f"  - fairness.group.dp_difference <= {metrics['fairness.group.dp_difference'] + 0.01}\n"
                       f"  - {{metric: accuracy, op: '>=', value: {metrics['accuracy.low'] - 0.01}, use: low}}\n")
    ok = run("gate", reported_run, "--policy", passing, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    outcome = json.loads(ok.stdout)
    assert outcome["passed"] and [o["passed"] for o in outcome["outcomes"]] == [True, True, True]
    assert outcome["outcomes"][0]["observed"] == pytest.approx(accuracy)

    failing = tmp_path / "fail.yaml"
    failing.write_text(f"rules:\n  - accuracy >= {accuracy - 0.01}\n  - accuracy > {accuracy}\n")
    bad = run("gate", reported_run, "--policy", failing)
    assert bad.returncode == 4 and "FAIL" in bad.stdout and "PASS" in bad.stdout

    typo = tmp_path / "typo.yaml"
    typo.write_text("rules:\n  - acuracy >= 0.5\n")
    unknown = run("gate", reported_run, "--policy", typo)
    assert unknown.returncode == 2 and "acuracy" in unknown.stderr and "did you mean accuracy" in unknown.stderr


def test_verify_detects_a_modified_weight_file_and_an_edited_report(reported_run, tmp_path):
    assert run("report", reported_run).returncode == 0  # signs the gate's verdict of the test above, if any
    html = reported_run / "report.html"
    assert run("verify", html).returncode == 0
    assert run("verify", reported_run / "report.json").returncode == 0
    weights = reported_run / "model" / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one flipped bit
        result = run("verify", html, "--format", "json")
        assert result.returncode == 4
        checks = {(f["role"], Path(f["path"]).name): f["status"] for f in json.loads(result.stdout)["files"]}
        assert checks[("fine-tuned model", "model.safetensors")] == "modified"
        assert checks[("fine-tuned model", "head.safetensors")] == "ok"
        assert checks[("base model", "model.safetensors")] == "ok"
    finally:
        weights.write_bytes(original)
    assert run("verify", html).returncode == 0

    report = json.loads((reported_run / "report.json").read_text())
    report["provenance"]["seed"] = 7  # a reviewer-visible claim, changed after signing
    edited = tmp_path / "report.json"
    edited.write_text(json.dumps(report))
    result = run("verify", edited, "--format", "json")
    assert result.returncode == 4
    assert json.loads(result.stdout)["signature_valid"] is False


def test_verify_with_a_different_trusted_key_fails(reported_run, tmp_path):
    assert run("keygen", "-o", tmp_path).returncode == 0
    result = run("verify", reported_run / "report.json", "--public-key", tmp_path / "signing-key.pub.pem")
    assert result.returncode == 4 and "different key" in result.stderr
    signer_public = Path(os.environ["TRUSTFM_SIGNING_KEY"]).with_name("signing-key.pub.pem")
    assert run("verify", reported_run / "report.json", "--public-key", signer_public).returncode == 0


def _html_with(html: str, old: str, new: str) -> str:
    assert old in html
    return html.replace(old, new, 1)


def test_verify_catches_an_edited_displayed_number_embedded_number_or_result_file(reported_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(reported_run, copy)
    html_path, json_path = copy / "report.html", copy / "report.json"
    assert run("verify", html_path).returncode == 0
    report = json.loads(json_path.read_text())
    accuracy = report["results"]["performance"]["accuracy"]["value"]
    shown = f"{accuracy:.4f}"
    original = html_path.read_text()

    # 1. a displayed number: the visible accuracy, the embedded JSON left alone
    visible, embedded = original.split('<script type="application/json" id="trustfm-report">')
    html_path.write_text(_html_with(visible, shown, "0.9999") + '<script type="application/json" id="trustfm-report">'
                         + embedded)
    result = run("verify", html_path, "--format", "json")
    assert result.returncode == 4 and not json.loads(result.stdout)["html_checked"]

    # 2. an embedded number: the accuracy in the JSON the page carries (and in report.json)
    html_path.write_text(original.replace(f'"value": {accuracy}', '"value": 0.9999', 1))
    assert run("verify", html_path).returncode == 4
    edited = json.loads(json_path.read_text())
    edited["results"]["performance"]["accuracy"]["value"] = 0.9999
    json_path.write_text(json.dumps(edited))
    result = run("verify", json_path, "--format", "json")
    assert result.returncode == 4 and json.loads(result.stdout)["signature_valid"] is False
    json_path.write_text(json.dumps(report))
    html_path.write_text(original)
    assert run("verify", html_path).returncode == 0

    # 3. a result file
    performance = copy / "results" / "performance.json"
    kept = performance.read_text()
    performance.write_text(kept.replace(str(accuracy), "0.9999", 1))
    result = run("verify", html_path, "--format", "json")
    assert result.returncode == 4
    checks = {Path(f["path"]).name: f["status"] for f in json.loads(result.stdout)["files"] if f["role"] == "result"}
    assert checks["performance.json"] == "modified"
    performance.write_text(kept)

    # outside its run folder: the report's own checks pass and the file checks are listed as not done
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(html_path, alone / "report.html")
    result = run("verify", alone / "report.html", "--format", "json")
    assert result.returncode == 0, result.stdout
    outcome = json.loads(result.stdout)
    assert outcome["signature_valid"] and outcome["html_checked"] and outcome["files"] == []
    assert any("run folder" in item for item in outcome["not_checked"])
