"""The one Predictor every consumer uses: shapes, order, precision, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustfm.config import load_config
from trustfm.errors import ConfigError
from trustfm.models.predictor import Predictor
from trustfm.train.run import train_run


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("predictor") / "run"
    train_run(load_config(None, {"data.train": str(tiny_data), "data.max_length": 32, "train.epochs": 1,
                                 "model.name_or_path": str(tiny_model_dir), "output_dir": str(out)}),
              show_progress=False)
    return out


def test_predictions_keep_input_order_whatever_the_length_batching(run_dir):
    predictor = Predictor.from_run(run_dir, batch_size=3)
    texts = ["great", "the delivery was slow and the support line never answered at all", "ok", "love it a lot"]
    together = predictor.predict_proba(texts)
    one_by_one = np.vstack([predictor.predict_proba([t]) for t in texts])
    assert together.shape == (4, predictor.num_labels) and together.dtype == np.float32
    np.testing.assert_allclose(together.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(predictor.predict(texts), together.argmax(axis=1))
    assert predictor.embed(texts).shape == (4, predictor.model.head.in_features)
    assert predictor.max_length == 32 and predictor.label_names == ["neg", "pos"]


def test_truncation_is_reported_per_text(run_dir):
    predictor = Predictor.from_run(run_dir)
    predictor.predict_proba(["short", "word " * 100])
    assert predictor.last_truncated.tolist() == [False, True]


def test_bf16_stays_close_to_fp32(run_dir):
    predictor = Predictor.from_run(run_dir)
    texts = ["great service", "awful and slow"]
    np.testing.assert_allclose(predictor.predict_proba(texts, precision="bf16"), predictor.predict_proba(texts),
                               atol=0.05)


def test_bad_folders_and_options_are_config_errors(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="no trained model"):
        Predictor(tmp_path)
    with pytest.raises(ConfigError, match="precision must be one of"):
        Predictor(run_dir / "model", precision="fp8")


def test_padding_aware_passes_answer_as_the_default_batching(run_dir):
    texts = ["great", "the delivery was slow and the support line never answered at all", "ok", "love it a lot",
             "fine", "an average product that does what it says and nothing more than that"]
    default = Predictor.from_run(run_dir)
    split = Predictor.from_run(run_dir, pass_cost_tokens=4)
    np.testing.assert_allclose(split.predict_proba(texts), default.predict_proba(texts), atol=1e-5)
    logits, features = split.logits_and_embeddings(texts)
    np.testing.assert_allclose(features, default.embed(texts), atol=1e-5)
    assert len(split._batches(split._encode(texts))) > 1 and len(default._batches(default._encode(texts))) == 1


def test_an_onnx_runtime_copy_answers_as_torch_and_a_graph_that_differs_is_refused(run_dir, monkeypatch):
    import copy

    import trustfm.models.onnx_export as onnx_export

    predictor = Predictor.from_run(run_dir, pass_cost_tokens=8, share_cpu=True)
    exported = predictor.onnx_runtime_copy()
    texts = ["great", "the delivery was slow and the support line never answered at all", "ok"]
    assert exported.format == "onnx" and exported.model is None and exported.model_dir == predictor.model_dir
    assert predictor.format == "torch" and predictor.model is not None  # the original is untouched
    np.testing.assert_allclose(exported.predict_proba(texts), predictor.predict_proba(texts), atol=1e-5)
    np.testing.assert_allclose(exported.embed(texts), predictor.embed(texts), atol=1e-4)
    assert exported.last_truncated.tolist() == [False, False, False]
    with pytest.raises(ConfigError, match="only a torch model"):
        exported.onnx_runtime_copy()

    real_export = onnx_export.export_onnx

    def export_another_model(model, tokenizer, path, **options):  # a graph whose head is not the model's
        other = copy.deepcopy(model)
        with torch.no_grad():
            other.head.bias += 0.5
        return real_export(other, tokenizer, path, **options)

    monkeypatch.setattr(onnx_export, "export_onnx", export_another_model)
    with pytest.raises(ConfigError, match="differs from the torch model"):
        predictor.onnx_runtime_copy()
