"""An exported classifier answers like its torch original, through the same Predictor, without torch model code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trustfm.compress.onnx import write_onnx_model
from trustfm.models.classifier import load_classifier
from trustfm.models.predictor import Predictor


@pytest.fixture(scope="module")
def onnx_dir(parent_run, tmp_path_factory):
    model, tokenizer, meta = load_classifier(parent_run / "model")
    folder = tmp_path_factory.mktemp("onnx") / "model"
    write_onnx_model(model, tokenizer, folder)
    (folder / "trustfm_model.json").write_text(json.dumps({**meta, "format": "onnx"}), encoding="utf-8")
    return folder


TEXTS = ["good", "a much longer text than the one the graph was traced with, to use the dynamic axes", "", "bad x"]


def test_onnx_predictor_matches_torch_in_probabilities_and_embeddings(parent_run, onnx_dir):
    torch_side, onnx_side = Predictor(parent_run / "model"), Predictor(onnx_dir, batch_size=3)
    np.testing.assert_allclose(onnx_side.predict_proba(TEXTS), torch_side.predict_proba(TEXTS), atol=1e-5)
    np.testing.assert_allclose(onnx_side.embed(TEXTS), torch_side.embed(TEXTS), atol=1e-4)
    assert onnx_side.format == "onnx" and onnx_side.model is None and not onnx_side.differentiable
    assert onnx_side.predict_proba([]).shape == (0, 2)


def test_onnx_model_loads_without_torch_model_code(onnx_dir):
    probe = (
        "import sys; from trustfm.models.predictor import Predictor; "
        f"p = Predictor({str(onnx_dir)!r}); print(p.predict_proba(['fine']).shape); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers.models.bert.modeling') "
        "or m == 'trustfm.models.classifier'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "(1, 2)"
    assert out[1] == "[]"
