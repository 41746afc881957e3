"""``trustfm compress``: every method writes a child run that every command takes, linked to its parent, and a
child that strays from its parent is never written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from trustfm.compress.run import CompressionSettings, compress_run
from trustfm.config import load_config
from trustfm.errors import ConfigError, FidelityError
from trustfm.models.loading import model_weight_hashes
from trustfm.models.predictor import Predictor
from trustfm.runs import RunRecord, RunPaths

# the tiny random model's probabilities sit near 0.5, where int8 rounding flips labels: the tolerance is the
# parent's own agreement check, tested on its own below
LOOSE = {"min_agreement": 0.5}
SETTINGS = {
    "onnx": {},
    "onnx-int8": LOOSE,
    "onnx-int8-static": {"calibration": "static", "calibration_rows": 32, **LOOSE},
    "torch-int8": LOOSE,
    "distill": {"layers": 1, "epochs": 2, **LOOSE},
    "prune": {"fraction": 0.5, **LOOSE},
}


MIXED = ["good", "the worst order i ever placed, it came broken and late and support never answered me at all",
         "bad stuff", "great", "it was fine i suppose although the delivery was slow", "awful product", "love it"]


def assert_batch_independent(predictor: Predictor, *, exact: bool) -> None:
    """Each text's probabilities alone equal those inside mixed batches of other texts (any order, any padding):
    to 1e-6 for a float model; for an int8 model the labels are equal and the probabilities within rounding."""
    alone = np.concatenate([predictor.predict_proba([t]) for t in MIXED])
    for order in (list(range(len(MIXED))), list(reversed(range(len(MIXED)))), [1, 0, 3, 2, 5, 4, 6]):
        batched = predictor.predict_proba([MIXED[i] for i in order])[np.argsort(order)]
        assert (batched.argmax(1) == alone.argmax(1)).all()
        np.testing.assert_allclose(batched, alone, atol=1e-6 if exact else 1e-5)


def test_the_parent_and_its_served_onnx_copy_answer_a_text_as_it_is_answered_alone(parent_run):
    parent = Predictor.from_run(parent_run)
    assert_batch_independent(parent, exact=True)
    assert_batch_independent(parent.onnx_runtime_copy(), exact=True)
    assert_batch_independent(Predictor.from_run(parent_run, pass_cost_tokens=32), exact=True)  # the service's passes


def test_row_independent_activations_fix_what_per_tensor_scales_break(parent_run, tmp_path):
    """Without the rewrite, ONNX Runtime's dynamic int8 scales a batch's activations together."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from trustfm.compress.onnx import row_independent_activations
    from trustfm.models.onnx_export import export_onnx
    from trustfm.models.onnx_session import OnnxClassifier

    parent = Predictor.from_run(parent_run)
    fp32, per_tensor, per_row = tmp_path / "fp32.onnx", tmp_path / "tensor.onnx", tmp_path / "row.onnx"
    export_onnx(parent.model, parent.tokenizer, fp32)
    quantize_dynamic(str(fp32), str(per_tensor), weight_type=QuantType.QInt8, per_channel=True)
    onnx.save(row_independent_activations(onnx.load(str(per_tensor))), str(per_row))
    encoded = parent.tokenizer(MIXED, padding=True, return_tensors="np")
    ids, mask = encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)
    for path, independent in ((per_tensor, False), (per_row, True)):
        session = OnnxClassifier(path)
        together, _ = session.run(ids, mask)
        alone = np.concatenate([session.run(ids[i:i + 1, :mask[i].sum()], mask[i:i + 1, :mask[i].sum()])[0]
                                for i in range(len(MIXED))])
        assert (np.abs(together - alone).max() < 1e-5) == independent, path.name


@pytest.mark.parametrize("method", list(SETTINGS))
def test_each_method_writes_a_child_run_linked_to_its_parent(parent_run, tmp_path, method):
    child = tmp_path / method
    settings = CompressionSettings(method=method.removesuffix("-static"), **SETTINGS[method])
    method = settings.method
    record = compress_run(parent_run, settings=settings, output_dir=child)
    info = RunRecord.load(RunPaths(child))
    block = info.model_extra["compression"]
    assert block["parent"] == str(parent_run.resolve()) and block["method"] == method
    assert block["parent_model_sha256"] == model_weight_hashes(parent_run / "model")
    assert info.model_sha256 == model_weight_hashes(child / "model") and info.model_sha256
    assert record.fidelity.agreement >= 0.5 and record.fidelity.rows > 0
    assert (child / "results" / "performance.json").is_file()
    texts = ["good", "bad stuff", "a longer text with several words in it"]
    child_proba = Predictor.from_run(child).predict_proba(texts)
    parent_proba = Predictor.from_run(parent_run).predict_proba(texts)
    assert child_proba.shape == (3, 2) and np.allclose(child_proba.sum(1), 1, atol=1e-5)
    if method == "onnx":
        np.testing.assert_allclose(child_proba, parent_proba, atol=1e-5)
        assert Predictor.from_run(child).format == "onnx"
    if method in ("onnx-int8", "torch-int8") and settings.calibration == "dynamic":
        # (static QDQ adds scale and zero-point nodes: on this tiny model, whose float embeddings dominate, it
        # does not shrink the file)
        assert record.size_bytes < record.parent_size_bytes
    if settings.calibration == "static" and method == "onnx-int8":
        assert record.calibration_rows == 32 and record.quantization == "int8 static"
    assert_batch_independent(Predictor.from_run(child), exact=method in ("onnx", "distill", "prune"))
    assert block["fidelity"]["batch_max_proba_diff"] < 1e-5 and block["fidelity"]["speed_ratio"] > 0
    if method == "distill":
        assert block["layers"] == 1 and block["training"]["epochs"] >= 1
    if method == "prune":
        assert block["heads_kept"] == [1, 1] and block["ffn_units_kept"] == [32, 32]


def test_the_cli_chain_compress_compare_report_gate_verify(parent_run, tmp_path):
    child = tmp_path / "child"
    out = run_cli(["compress", str(parent_run), "--method", "onnx", "-o", str(child), "--format", "json"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == "onnx"
    for args in (["evaluate", str(child)],
                 ["audit", "compare", str(parent_run), str(child), "--robustness-texts", "40", "--attack-texts", "8",
                  "--membership-rows", "40"]):
        done = run_cli(args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: compression\nrules:\n  - compare.worst_group_accuracy_drop <= 0.02\n"
                      "  - compare.agreement >= 0.99\n", encoding="utf-8")
    gate = run_cli(["gate", str(child), "--policy", str(policy)])
    assert gate.returncode == 0 and "PASS" in gate.stdout, gate.stdout + gate.stderr
    assert run_cli(["report", str(child)]).returncode == 0  # after the gate: its verdict is signed too
    html = (child / "report.html").read_text(encoding="utf-8")
    assert "Compression — onnx" in html and "Compression-identified exemplars" in html
    assert run_cli(["verify", str(child / "report.json")]).returncode == 0


def test_a_child_beyond_the_tolerance_is_never_written(parent_run, tmp_path):
    child = tmp_path / "child"
    done = run_cli(["compress", str(parent_run), "--method", "torch-int8", "-o", str(child),
                    "--max-proba-diff", "1e-9"])
    assert done.returncode == 6
    line = done.stderr.strip().splitlines()[-1]
    assert "was not written" in line and "--max-proba-diff" in line and "Traceback" not in done.stderr
    assert not child.exists() and not list(tmp_path.iterdir())


def test_bad_requests_get_one_clear_line(parent_run, tmp_path):
    unknown = run_cli(["compress", str(parent_run), "--method", "zip", "-o", str(tmp_path / "x")])
    assert unknown.returncode == 2 and "'zip' is not one of" in unknown.stderr
    fraction = run_cli(["compress", str(parent_run), "--method", "prune", "--fraction", "1.5", "-o", str(tmp_path / "p")])
    assert fraction.returncode == 2 and "--fraction" in fraction.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        compress_run(parent_run, settings=CompressionSettings(method="onnx"), output_dir=busy)
    with pytest.raises(ConfigError, match="outside its parent"):
        compress_run(parent_run, settings=CompressionSettings(method="onnx"), output_dir=parent_run / "small")


def test_compressing_a_compressed_onnx_model_is_refused(parent_run, tmp_path):
    child = tmp_path / "onnx"
    compress_run(parent_run, settings=CompressionSettings(method="onnx"), output_dir=child)
    with pytest.raises(ConfigError, match="holds a onnx model"):
        compress_run(child, settings=CompressionSettings(method="onnx-int8"), output_dir=tmp_path / "again")


def test_a_dp_teacher_is_not_distilled_on_its_private_texts(parent_run, tmp_path):
    dp_run = tmp_path / "dp"
    shutil.copytree(parent_run, dp_run)
    config = load_config(dp_run / "config.yaml", {"privacy.dp": {"epsilon": 8.0}})
    (dp_run / "config.yaml").write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    with pytest.raises(ConfigError, match="differential privacy.*--public-texts-only"):
        compress_run(dp_run, settings=CompressionSettings(method="distill", layers=1), output_dir=tmp_path / "s")
    with pytest.raises(ConfigError, match="needs --unlabelled"):
        compress_run(dp_run, settings=CompressionSettings(method="distill", layers=1, public_texts_only=True),
                     output_dir=tmp_path / "s")
    public = tmp_path / "public.csv"
    public.write_text("text\n" + "\n".join(f"public sentence number {i} is fine" for i in range(40)) + "\n")
    record = compress_run(dp_run, settings=CompressionSettings(method="distill", layers=1, epochs=1,
                                                               unlabelled=str(public), public_texts_only=True,
                                                               min_agreement=0.0), output_dir=tmp_path / "s")
    assert record.training["rows"] == 40 and record.training["unlabelled_rows"] == 40
    with pytest.raises(FidelityError):
        compress_run(parent_run, settings=CompressionSettings(method="prune", fraction=0.5, epochs=1,
                                                              min_agreement=1.0, max_proba_diff=1e-9),
                     output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()
