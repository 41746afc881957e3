import shutil

import pytest
import torch

from trustfm.config import ModelConfig
from trustfm.errors import ConfigError
from trustfm.models import build_classifier, load_classifier, save_classifier
from trustfm.models.loading import resolve_model_dir


def test_pickle_weights_are_refused_unless_allowed(tiny_model_dir, tmp_path):
    from transformers import BertModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    model = BertModel.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ConfigError) as info:
        build_classifier(ModelConfig(name_or_path=str(folder)), ["a", "b"])
    assert "arbitrary code" in str(info.value) and "allow_pickle" in str(info.value)
    built, _ = build_classifier(ModelConfig(name_or_path=str(folder), allow_pickle=True), ["a", "b"])
    assert torch.equal(
        built.encoder.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight
    )


def test_hub_ids_are_refused_offline():
    with pytest.raises(ConfigError) as info:
        resolve_model_dir("bert-base-uncased")
    assert "offline" in str(info.value)


def test_save_and_load_give_identical_logits(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["neg", "pos"])
    model.eval()
    batch = tokenizer(["a fine day", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(batch["input_ids"], batch["attention_mask"])
    save_classifier(model, tokenizer, tmp_path / "m", label_names=["neg", "pos"])
    assert not (tmp_path / "m.tmp").exists()
    assert not list((tmp_path / "m").glob("*.bin"))
    loaded, _, meta = load_classifier(tmp_path / "m")
    with torch.no_grad():
        after = loaded(batch["input_ids"], batch["attention_mask"])
    assert meta["label_names"] == ["neg", "pos"]
    assert torch.allclose(before, after, atol=1e-6)


def test_mean_pooling_ignores_padding(tiny_model_dir):
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["a", "b"])
    model.eval()
    alone = tokenizer(["hello there"], return_tensors="pt")
    padded = tokenizer(["hello there", "a much longer sentence than the first"], padding=True, return_tensors="pt")
    with torch.no_grad():
        x = model.pooled(alone["input_ids"], alone["attention_mask"])
        y = model.pooled(padded["input_ids"], padded["attention_mask"])[:1]
    assert torch.allclose(x, y, atol=1e-5)


def test_head_from_label_descriptions_is_a_zero_shot_classifier_with_the_set_margin(tiny_model_dir):
    from trustfm.models import init_head_from_descriptions

    descriptions = {"neg": ["bad awful", "terrible"], "mid": "so so", "pos": ["great fine", "good day"]}
    config = ModelConfig(name_or_path=str(tiny_model_dir), label_descriptions=descriptions)
    assert config.label_descriptions["mid"] == ["so so"]
    torch.manual_seed(0)
    model, tokenizer = build_classifier(config, ["neg", "mid", "pos"])
    assert model.training
    model.eval()
    centres = []
    with torch.no_grad():
        for texts in config.label_descriptions.values():
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            centres.append(model.pooled(batch["input_ids"], batch["attention_mask"]).mean(dim=0))
        logits = model.head(torch.stack(centres))  # (class centre, class)
    assert logits.argmax(dim=1).tolist() == [0, 1, 2]
    others = (logits.sum(dim=1) - logits.diagonal()) / 2
    assert float((logits.diagonal() - others).mean()) == pytest.approx(4.0, rel=1e-4)
    # the same texts for every class cannot be told apart: a clear error, not a head of zeros
    with pytest.raises(ConfigError, match="does not tell the classes"):
        init_head_from_descriptions(model, tokenizer, [["same"], ["same"], ["same"]])


def test_label_descriptions_must_name_exactly_the_classes(tiny_model_dir):
    config = ModelConfig(name_or_path=str(tiny_model_dir), label_descriptions={"neg": "bad", "happy": "good"})
    with pytest.raises(ConfigError, match=r"missing \['pos'\], unknown \['happy'\]"):
        build_classifier(config, ["neg", "pos"])
    with pytest.raises(ValueError, match="no description text for class 'pos'"):
        ModelConfig(label_descriptions={"neg": "bad", "pos": [" "]})
