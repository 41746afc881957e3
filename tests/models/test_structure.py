"""Pruned and distilled encoders of every family: removing a head group or a feed-forward unit equals silencing it,
keeping layers keeps a working model, and the shape survives saving."""

from __future__ import annotations

import copy

import pytest
import torch

from tiny_families import FAMILIES, build_tiny_model
from trustfm.models.classifier import TextClassifier, load_classifier, save_classifier
from trustfm.models.families import _out_in_dims, family_of
from trustfm.models.loading import load_encoder
from trustfm.models.structure import apply_structure, shrink_encoder


@pytest.fixture(scope="module", params=FAMILIES)
def classifier(request, tmp_path_factory):
    folder = build_tiny_model(request.param, tmp_path_factory.mktemp(request.param))
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(folder, allow_pickle=False)
    return TextClassifier(encoder, 2).eval(), tokenizer


def _batch(tokenizer):
    return tokenizer(["a short text", "another, longer text to pad the batch out"], padding=True, return_tensors="pt")


def _silence(slices) -> None:
    """Zero what a group or unit writes into the residual stream: its columns of the output projection."""
    for module, axis, index in slices:
        if axis == "in":
            in_dim = _out_in_dims(module)[1]
            with torch.no_grad():
                module.weight.index_fill_(in_dim, torch.as_tensor(index), 0.0)


def test_removing_a_head_group_and_units_equals_silencing_them(classifier):
    model, tokenizer = classifier
    batch = _batch(tokenizer)
    silenced = copy.deepcopy(model)
    adapter = family_of(silenced.encoder)
    layers = adapter.layers(silenced.encoder)
    for layer in layers:
        _silence(adapter.head_groups(silenced.encoder, layer)[1])
        for unit in adapter.ffn_units(layer)[10:]:
            _silence(unit)
    with torch.no_grad():
        expected = silenced(batch["input_ids"], batch["attention_mask"])
    structure = shrink_encoder(silenced.encoder, [[0]] * len(layers), [range(10)] * len(layers))
    with torch.no_grad():
        got = silenced(batch["input_ids"], batch["attention_mask"])
    assert structure == {"heads": [[0]] * len(layers), "ffn_units": [10] * len(layers)}
    assert [len(adapter.head_groups(silenced.encoder, layer)) for layer in adapter.layers(silenced.encoder)] == \
        [1] * len(layers) or adapter.name not in ("modernbert", "gpt2", "llama")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, model(batch["input_ids"], batch["attention_mask"]), atol=1e-4)


def test_a_pruned_classifier_saves_and_loads_with_its_shape(classifier, tmp_path):
    model, tokenizer = classifier
    model = copy.deepcopy(model)
    layers = len(family_of(model.encoder).layers(model.encoder))
    structure = shrink_encoder(model.encoder, [[1]] + [[0, 1]] * (layers - 1), [range(5, 40)] + [range(64)] * (layers - 1))
    save_classifier(model, tokenizer, tmp_path / "m", label_names=["a", "b"], extra={"structure": structure})
    loaded, _, meta = load_classifier(tmp_path / "m")
    batch = _batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["input_ids"], batch["attention_mask"]),
                                   model(batch["input_ids"], batch["attention_mask"]))
    assert meta["structure"] == structure


def test_a_student_keeps_the_chosen_layers_and_runs(classifier):
    from trustfm.compress.student import init_student

    model, tokenizer = classifier
    student, chosen = init_student(model, 1)
    adapter = family_of(student.encoder)
    assert chosen == [0] and len(adapter.layers(student.encoder)) == 1
    assert student.encoder.config.num_hidden_layers == 1
    batch = _batch(tokenizer)
    with torch.no_grad():
        assert student(batch["input_ids"], batch["attention_mask"]).shape == (2, 2)


def test_structure_for_the_wrong_depth_or_an_empty_layer_is_refused(classifier):
    model, _ = classifier
    model = copy.deepcopy(model)
    layers = len(family_of(model.encoder).layers(model.encoder))
    with pytest.raises(ValueError, match=f"encoder has {layers}"):
        apply_structure(model.encoder, {"heads": [[0]], "ffn_units": [4]})
    with pytest.raises(ValueError, match="at least one head"):
        shrink_encoder(model.encoder, [[]] + [[0]] * (layers - 1), [range(4)] * layers)


def test_an_unknown_layout_is_refused_in_one_line():
    from trustfm.errors import ConfigError

    class Odd(torch.nn.Module):
        config = type("C", (), {"model_type": "odd-net"})()

    with pytest.raises(ConfigError, match="distillation cannot address the layers of a 'odd-net' model"):
        family_of(Odd(), purpose="distillation")
