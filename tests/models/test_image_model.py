"""The image model: ImageNet weights from their package, features that carry what pretraining learnt, a
``Predictor`` that takes paths, bytes, arrays and PIL images alike."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from trustfm.errors import DataError
from trustfm.models.image import build_image_classifier, pretrained_weights_file
from trustfm.models.predictor import Predictor


def test_the_shipped_imagenet_weights_load_into_every_backbone_tensor():
    shipped = torch.load(pretrained_weights_file(), weights_only=True)
    model = build_image_classifier(num_labels=4, image_size=64, pretrained=True, dropout=0.2)
    backbone = model.backbone.state_dict()
    loaded = [k for k in shipped if not k.startswith("_fc.")]
    assert len(loaded) > 200 and all(torch.equal(backbone[k], shipped[k]) for k in loaded)
    scratch = build_image_classifier(num_labels=4, image_size=64, pretrained=False, dropout=0.2)
    assert not torch.equal(scratch.backbone.state_dict()["_conv_stem.weight"], shipped["_conv_stem.weight"])


@pytest.mark.integration
def test_pretrained_features_separate_real_digits_far_better_than_random_ones(tmp_path):
    """A linear probe on frozen features of scikit-learn's digits: the ImageNet features must carry over."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    digits = load_digits()
    rows = np.random.default_rng(0).permutation(len(digits.images))[:400]
    grey = (digits.images[rows] / 16 * 255).astype(np.uint8)
    pixels = torch.from_numpy(np.stack([np.asarray(Image.fromarray(g).resize((64, 64), Image.Resampling.BILINEAR))
                                        for g in grey])).float().div(255)[:, None].repeat(1, 3, 1, 1)
    scores = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        model = build_image_classifier(num_labels=10, image_size=64, pretrained=pretrained, dropout=0.2).eval()
        with torch.no_grad():
            features = model.pooled(pixels).numpy()
        probe = LogisticRegression(max_iter=2000)
        scores[pretrained] = cross_val_score(probe, features, digits.target[rows], cv=3).mean()
    assert scores[True] > 0.85 and scores[True] > scores[False] + 0.2, scores


def test_frozen_batch_norm_stays_in_eval_mode_while_training():
    from trustfm.train.privacy import set_trainable

    model = build_image_classifier(num_labels=2, image_size=32, pretrained=True, dropout=0.2)
    set_trainable(model, "head")
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.head.training
    before = norms[0].running_mean.clone()
    model(pixel_values=torch.rand(4, 3, 32, 32))
    assert torch.equal(before, norms[0].running_mean)  # no statistics mixed across examples
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.train()
    assert all(m.training for m in norms)


def test_the_predictor_answers_paths_bytes_arrays_and_pil_images_alike(image_run, image_data):
    predictor = Predictor.from_run(image_run)
    assert predictor.modality == "image" and predictor.tokenizer is None and predictor.differentiable
    path = image_data.parent / "images" / "0000.png"
    image = Image.open(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    proba = predictor.predict_proba([str(path), buffer.getvalue(), np.asarray(image), image])
    assert proba.shape == (4, 3) and np.allclose(proba, proba[0], atol=1e-6)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert predictor.embed([str(path)]).shape == (1, 1280)
    with pytest.raises(DataError, match="image 2: not an image file Pillow can read"):
        predictor.predict_proba([str(path), b"not an image"])
    with pytest.raises(DataError, match="image 1 .*nope.png.*does not exist"):
        predictor.predict_proba([str(path.parent / "nope.png")])
