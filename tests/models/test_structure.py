"""Pruned encoders: removing a head or a feed-forward unit equals silencing it, and the shape survives saving."""

from __future__ import annotations

import copy

import pytest
import torch

from trustfm.models.classifier import TextClassifier, load_classifier, save_classifier
from trustfm.models.loading import load_encoder
from trustfm.models.structure import apply_structure, bert_layers, head_size, shrink_encoder


@pytest.fixture
def classifier(tiny_model_dir):
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_model_dir, allow_pickle=False)
    model = TextClassifier(encoder, 2).eval()
    return model, tokenizer


def _batch(tokenizer):
    return tokenizer(["a short text", "another, longer text to pad the batch out"], padding=True, return_tensors="pt")


def test_removing_a_head_and_units_equals_silencing_them(classifier):
    model, tokenizer = classifier
    batch = _batch(tokenizer)
    silenced = copy.deepcopy(model)
    size = head_size(model.encoder)
    with torch.no_grad():
        for layer in bert_layers(silenced.encoder):
            # head 1's values and feed-forward units 10.. contribute nothing (GELU(0) = 0)
            layer.attention.self.value.weight[size:2 * size] = 0
            layer.attention.self.value.bias[size:2 * size] = 0
            layer.intermediate.dense.weight[10:] = 0
            layer.intermediate.dense.bias[10:] = 0
        expected = silenced(batch["input_ids"], batch["attention_mask"])
    structure = shrink_encoder(silenced.encoder, [[0], [0]], [range(10), range(10)])
    with torch.no_grad():
        got = silenced(batch["input_ids"], batch["attention_mask"])
    assert structure == {"heads": [[0], [0]], "ffn_units": [10, 10]}
    assert bert_layers(silenced.encoder)[0].attention.self.query.out_features == size
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, model(batch["input_ids"], batch["attention_mask"]), atol=1e-4)


def test_a_pruned_classifier_saves_and_loads_with_its_shape(classifier, tmp_path):
    model, tokenizer = classifier
    structure = shrink_encoder(model.encoder, [[1], [0, 1]], [range(5, 40), range(64)])
    save_classifier(model, tokenizer, tmp_path / "m", label_names=["a", "b"], extra={"structure": structure})
    loaded, _, meta = load_classifier(tmp_path / "m")
    batch = _batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["input_ids"], batch["attention_mask"]),
                                   model(batch["input_ids"], batch["attention_mask"]))
    assert meta["structure"] == structure
    assert bert_layers(loaded.encoder)[0].intermediate.dense.out_features == 35


def test_structure_for_the_wrong_depth_or_an_empty_layer_is_refused(classifier):
    model, _ = classifier
    with pytest.raises(ValueError, match="encoder has 2"):
        apply_structure(model.encoder, {"heads": [[0]], "ffn_units": [4]})
    with pytest.raises(ValueError, match="at least one head"):
        shrink_encoder(model.encoder, [[], [0]], [range(4), range(4)])
