"""Every architecture family through the whole lifecycle, as a user runs it: a tiny random-weight model of each
(built from a config, with a tokenizer of the family's kind built locally) is trained, audited with every audit
that applies, compressed with every method, and served; every command ends with exit 0 or one clear line, and
none is an internal error. The table in docs/families.md is this test's outcome."""

from __future__ import annotations

import json

import pytest

from conftest import Server, make_rows, post_json, run_cli, write_csv
from tiny_families import FAMILIES, build_tiny_model

METHODS = ("onnx", "onnx-int8", "torch-int8", "distill", "prune")
# a method that cannot apply to a family refuses in one line naming why
REFUSED = {("gpt2", "torch-int8"): "its projections are Conv1D"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("family-data") / "data.csv", make_rows(160, seed=1))


def _ok(result, what):
    assert "This is a bug" not in result.stderr, f"{what}: {result.stderr[-800:]}"
    assert result.returncode == 0, f"{what}: {result.stderr[-800:]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_trains_audits_compresses_and_serves(family, data, tmp_path):
    model = build_tiny_model(family, tmp_path / "model")
    run = tmp_path / "run"
    _ok(run_cli(["train", "--data", data, "--id-column", "id", "--group-column", "group", "--model", model,
                 "--epochs", "1", "--learning-rate", "3e-3", "--batch-size", "16", "--max-length", "32", "--quiet",
                 "--set", "evaluate.bootstrap_samples=30", "--set", "fairness.min_group_size=5", "-o", run]), "train")
    audited = run_cli(["audit", run, "--all", "--max-examples", "10", "--format", "json"])
    _ok(audited, "audit --all")
    statuses = {a["audit"]: a["status"] for a in json.loads(audited.stdout)["audits"]}
    assert {k: statuses[k] for k in ("performance", "fairness", "robustness", "explanations", "attacks",
                                     "membership", "data_quality")} == dict.fromkeys(
        ("performance", "fairness", "robustness", "explanations", "attacks", "membership", "data_quality"), "ran")
    assert "failed" not in statuses.values()
    explained = json.loads((run / "results" / "explanations.json").read_text())
    words = [w for example in explained["examples"] for w in example.get("words", [])]
    assert words and all(not w.startswith(("##", "Ġ", "▁")) for w in words)  # words, not pieces
    for method in METHODS:
        child = tmp_path / method
        done = run_cli(["compress", run, "--method", method, "--min-agreement", "0", "-o", child])
        if (family, method) in REFUSED:
            assert done.returncode == 2 and REFUSED[(family, method)] in done.stderr, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1 and not child.exists()
            continue
        _ok(done, f"compress {method}")
        assert (child / "results" / "performance.json").is_file()
    assert run_cli(["report", run]).returncode == 0
    # the weights as trained: the ONNX export of every family is the compress step's (serving's auto backend
    # exports the same graph at start-up, seconds per family the suite need not spend twice)
    server = Server(run, "--no-auth", "--backend", "torch")
    try:
        answer = post_json(server, "/v1/predict", {"texts": ["a great product", "it came broken"]})
        assert answer.status_code == 200, answer.text
        assert [p["label"] in ("pos", "neg") for p in answer.json()["predictions"]] == [True, True]
    finally:
        server.stop()
