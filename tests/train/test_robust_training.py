"""Adversarial training and embedding noise: the perturbations are what the papers define, and a run trains with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate
from trustfm.runs import read_json
from trustfm.train.loop import batch_loss
from trustfm.train.robust import AdversarialTraining, EmbeddingNoise, embedding_scale


class _Trainer:  # what the callbacks read from the trainer
    def __init__(self, model):
        self.model = model

        class S:
            global_step = 0

        self.state = S()


def _tiny(tiny_model_dir):
    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier

    torch.manual_seed(0)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir), dropout=0.0), ["neg", "pos"])
    enc = tokenizer(["the service was awful", "great and friendly support staff"], padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": torch.tensor([0, 1])}
    return model, batch


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_fgm_and_pgd_add_the_gradient_of_the_loss_at_the_perturbation(tiny_model_dir, method):
    model, batch = _tiny(tiny_model_dir)
    model.train()
    callback = AdversarialTraining(method=method, epsilon=0.5, steps=3)
    trainer = _Trainer(model)
    callback.on_fit_start(trainer)
    batch_loss(model(batch["input_ids"], batch["attention_mask"]), batch).backward()
    clean = _grads(model)
    clean_embed_grad = callback._embedded.grad.clone()
    delta = callback.adversarial_delta(model, batch, clean_embed_grad).detach()
    model.zero_grad()
    callback._attacking = True
    callback._loss_at(model, batch, delta).backward()
    callback._attacking = False
    adversarial = _grads(model)

    model.zero_grad()
    batch_loss(model(batch["input_ids"], batch["attention_mask"]), batch).backward()
    callback.on_after_backward(trainer, batch)
    combined = _grads(model)
    callback.on_fit_end(trainer)
    for name, grad in combined.items():
        torch.testing.assert_close(grad, clean[name] + adversarial.get(name, 0), rtol=1e-4, atol=1e-6)

    radius = 0.5 * embedding_scale(model)
    norms = delta.norm(dim=-1)
    mask = batch["attention_mask"].bool()
    assert torch.all(norms[~mask] == 0)  # padding is never perturbed
    assert torch.all(norms[mask] <= radius * (1 + 1e-5))
    if method == "fgm":  # one full step along the gradient: every real token sits on the sphere
        torch.testing.assert_close(norms[mask], torch.full_like(norms[mask], radius), rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # the perturbation raises the loss (it is an ascent direction)
        clean_loss = batch_loss(model(batch["input_ids"], batch["attention_mask"]), batch)
        assert callback._loss_at(model, batch, delta) > clean_loss


def test_freelb_accumulates_every_ascent_step(tiny_model_dir):
    model, batch = _tiny(tiny_model_dir)
    model.train()
    trainer = _Trainer(model)
    one = AdversarialTraining(method="freelb", epsilon=0.5, steps=1)
    three = AdversarialTraining(method="freelb", epsilon=0.5, steps=3)
    norms = []
    for callback in (one, three):
        model.zero_grad()
        callback.on_fit_start(trainer)
        batch_loss(model(batch["input_ids"], batch["attention_mask"]), batch).backward()
        clean = _grads(model)["head.weight"].clone()
        callback.on_after_backward(trainer, batch)
        norms.append(float((_grads(model)["head.weight"] - clean).norm()))
        callback.on_fit_end(trainer)
    assert norms[0] > 0 and norms[1] > 0 and norms[0] != pytest.approx(norms[1])


def test_embedding_noise_only_while_training(tiny_model_dir):
    model, batch = _tiny(tiny_model_dir)
    callback = EmbeddingNoise(std=0.5)
    trainer = _Trainer(model)
    callback.on_fit_start(trainer)
    emb = model.input_embeddings()
    model.train()
    a, b = emb(batch["input_ids"]), emb(batch["input_ids"])
    assert not torch.equal(a, b)
    noise = (a - emb.weight[batch["input_ids"]]).detach()
    expected = 0.5 * embedding_scale(model) / emb.weight.shape[1] ** 0.5
    assert float(noise.std()) == pytest.approx(expected, rel=0.15)
    model.eval()
    assert torch.equal(emb(batch["input_ids"]), emb.weight[batch["input_ids"]])
    callback.on_fit_end(trainer)
    model.train()
    assert torch.equal(emb(batch["input_ids"]), emb.weight[batch["input_ids"]])


def test_a_run_trains_with_freelb_noise_and_perturbation_augmentation(tiny_config):
    config = load_config(None, {
        **tiny_config, "train.epochs": 2,
        "robustness.adversarial_training": {"method": "freelb", "epsilon": 0.3, "steps": 2},
        "robustness.embedding_noise": 0.1, "robustness.augmentation": {"share": 0.5},
    })
    paths = train_and_evaluate(config, show_progress=False)
    info = read_json(paths.run_info)
    assert info["rows"]["augmented"] > 100
    assert info["robust_training"]["adversarial_training"]["method"] == "freelb"
    assert read_json(paths.result("performance"))["accuracy"]["value"] > 0.8


def test_unknown_augmentation_perturbation_is_a_config_error(tiny_config):
    from trustfm.errors import ConfigError

    config = load_config(None, {**tiny_config, "robustness.augmentation": {"tests": ["typo_swap", "typo_swapp"]}})
    with pytest.raises(ConfigError, match="typo_swapp"):
        train_and_evaluate(config, show_progress=False)
