"""The image audits' numbers: FGSM and PGD against the Adversarial Robustness Toolbox on the same model, the
corruptions' ImageNet-C parameters, and attributions that find what a model uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trustfm.audit.context import Bootstrap
from trustfm.models.image import build_image_classifier
from trustfm.models.pixel_attacks import fgsm, pgd

pytest.importorskip("art")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_image_classifier(num_labels=3, image_size=32, pretrained=True, dropout=0.2).eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(12, 3, 32, 32, generator=generator), torch.arange(12) % 3


def _art(model):
    from art.estimators.classification import PyTorchClassifier

    # the classifier itself: its forward takes the pixels as its first argument, as ART calls it
    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32),
                             nb_classes=3, clip_values=(0.0, 1.0), device_type="cpu")


@pytest.mark.parametrize("epsilon", [2 / 255, 8 / 255])
def test_fgsm_equals_the_adversarial_robustness_toolbox(model, batch, epsilon):
    from art.attacks.evasion import FastGradientMethod

    pixels, labels = batch
    ours = fgsm(model, pixels, labels, epsilon=epsilon).numpy()
    theirs = FastGradientMethod(_art(model), norm=np.inf, eps=epsilon, batch_size=12).generate(
        pixels.numpy(), y=np.eye(3)[labels.numpy()])
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.abs(ours - pixels.numpy()).max() <= epsilon + 1e-6


def test_pgd_equals_the_adversarial_robustness_toolbox_from_the_same_start(model, batch):
    from art.attacks.evasion import ProjectedGradientDescent

    pixels, labels = batch
    epsilon, step, steps = 4 / 255, 1 / 255, 5
    ours = pgd(model, pixels, labels, epsilon=epsilon, step=step, steps=steps, random_start=False).numpy()
    theirs = ProjectedGradientDescent(_art(model), norm=np.inf, eps=epsilon, eps_step=step, max_iter=steps,
                                      num_random_init=0, batch_size=12, verbose=False).generate(
        pixels.numpy(), y=np.eye(3)[labels.numpy()])
    assert np.abs(ours - theirs).max() < 1e-5
    with torch.no_grad():
        ours_pred = model(pixel_values=torch.from_numpy(ours)).argmax(1)
        theirs_pred = model(pixel_values=torch.from_numpy(theirs)).argmax(1)
    assert (ours_pred == theirs_pred).all()


def test_pgd_is_at_least_as_strong_as_fgsm_and_stays_in_the_ball(model, batch):
    pixels, labels = batch
    epsilon = 8 / 255
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        fgsm_loss = loss(model(pixel_values=fgsm(model, pixels, labels, epsilon=epsilon)), labels)
        adversarial = pgd(model, pixels, labels, epsilon=epsilon, step=2 / 255, steps=10,
                          generator=torch.Generator().manual_seed(0))
        assert loss(model(pixel_values=adversarial), labels) >= fgsm_loss
    assert (adversarial - pixels).abs().max() <= epsilon + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1


def test_the_attack_suite_counts_success_among_correct_images_only(model, batch):
    from trustfm.audit.adversarial.attacks import attack_suite

    pixels, _ = batch
    images = (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    with torch.no_grad():
        predicted = model(pixel_values=torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    labels = predicted.copy()
    labels[:4] = (labels[:4] + 1) % 3  # four images the model gets wrong
    result = attack_suite(model, images, labels, ["a", "b", "c"], dataset="x", bootstrap=Bootstrap(0, 0.95, 0),
                          seed=0, epsilons=(8 / 255,), pgd_steps=5, examples=1)
    assert result.clean_accuracy.value == pytest.approx(8 / 12)
    pgd_score = next(a for a in result.attacks if a.attack == "pgd")
    # robust accuracy over all 12, success over the 8 the model had right: the two must agree
    assert pgd_score.robust_accuracy.value == pytest.approx((1 - pgd_score.success_rate.value) * 8 / 12)
    assert result.metrics()["pgd_eps8.robust_accuracy"] == pgd_score.robust_accuracy.value
    assert result.examples[0].adversarial.startswith("data:image/png;base64,")


def test_corruptions_follow_the_imagenet_c_parameters():
    from trustfm.audit.corruption.corruptions import BRIGHTNESS_SHIFT, NOISE_STD, brightness, gaussian_blur, gaussian_noise, jpeg

    grey = np.full((4, 64, 64, 3), 128, dtype=np.uint8)
    rng = np.random.default_rng(0)
    for severity in (1, 2):  # stronger noise is clipped at 0 and 1 often enough to lower the measured spread
        noisy = gaussian_noise(grey, severity, rng).astype(np.float64) / 255
        assert np.std(noisy - 128 / 255) == pytest.approx(NOISE_STD[severity - 1], rel=0.05)
    stripes = np.zeros((1, 224, 224, 3), dtype=np.uint8)  # at 224 px, sigma is ImageNet-C's own
    stripes[:, :, ::2] = 255
    assert gaussian_blur(stripes, 1, rng).std() < 0.5 * stripes.std()
    assert gaussian_blur(stripes, 5, rng).std() < gaussian_blur(stripes, 1, rng).std()
    dark = np.full((1, 8, 8, 3), 50, dtype=np.uint8)
    assert brightness(dark, 3, rng).max() == round(50 + BRIGHTNESS_SHIFT[2] * 255)
    photo = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert (jpeg(photo, 5, rng) != photo).any() and jpeg(photo, 5, rng).shape == photo.shape


def test_the_corruption_suite_scores_a_known_predictor():
    from trustfm.audit.corruption.corruptions import corruption_suite

    # class = whether the image is bright; brightness raises every image, so dark images flip, bright ones stay
    images = np.concatenate([np.full((5, 16, 16, 3), 40, np.uint8), np.full((5, 16, 16, 3), 220, np.uint8)])
    labels = np.array([0] * 5 + [1] * 5)

    def predict(batch):
        bright = np.array([image.mean() > 128 for image in batch])
        return np.stack([~bright, bright], axis=1).astype(np.float32)

    result = corruption_suite(images, labels, predict, ["dark", "bright"], dataset="x",
                              bootstrap=Bootstrap(0, 0.95, 0), seed=0, corruptions=("brightness",), examples=1)
    shifted = {s.severity: s for s in result.corruptions[0].severities}
    # +0.4 and +0.5 of value lift a 40/255 image past the middle: every dark image flips at severities 4 and 5
    assert shifted[1].accuracy.value == 1.0 and shifted[5].accuracy.value == 0.5
    assert shifted[5].flip_rate.value == 0.5
    assert result.worst_accuracy == 0.5 and result.clean_accuracy.value == 1.0
    assert result.examples[0].corrupted["brightness"].startswith("data:image/png;base64,")


class LeftHalf(torch.nn.Module):
    """A model that reads only the left half of the image: class 1's logit is its mean brightness there."""

    def forward(self, pixel_values):
        left = pixel_values[..., : pixel_values.shape[-1] // 2].mean(dim=(1, 2, 3)) * 4
        return torch.stack([-left, left], dim=1)


def test_attributions_find_what_the_model_uses_and_beat_random_deletion():
    from trustfm.audit.attributions.methods import attribution_audit, attribution_maps

    images = np.random.default_rng(0).integers(100, 256, (6, 16, 16, 3), dtype=np.uint8)
    model = LeftHalf()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    maps = attribution_maps(model, pixels, torch.ones(6, dtype=torch.long), "integrated_gradients")
    assert np.abs(maps[:, :, 8:]).max() == 0 and maps[:, :, :8].min() > 0
    # completeness: IG sums to f(x) - f(black)
    with torch.no_grad():
        expected = (model(pixel_values=pixels)[:, 1] - model(pixel_values=pixels * 0)[:, 1]).numpy()
    assert maps.sum(axis=(1, 2)) == pytest.approx(expected, rel=1e-3)
    # this model reads brightness: black is the absence of what it uses
    result = attribution_audit(model, images, np.ones(6, dtype=np.int64), ["a", "b"], dataset="x",
                               bootstrap=Bootstrap(0, 0.95, 0), seed=0, examples=2, baseline="black")
    for method in result.methods:
        assert method.faithfulness_gain.value > 0, method
        assert len(method.curve) == result.steps + 1
    assert set(result.examples[0].maps) == {"integrated_gradients", "saliency"}


class LeftDark(torch.nn.Module):
    """Class 1 the darker the left half is (dark shapes on a light background)."""

    def forward(self, pixel_values):
        dark = (1 - pixel_values[..., : pixel_values.shape[-1] // 2]).mean(dim=(1, 2, 3)) * 8
        return torch.stack([-dark, dark], dim=1)


def test_deletion_takes_its_baseline_from_the_data_and_flags_maps_worse_than_chance():
    """Dark shapes on a light background: deleting to black removes nothing; the data's median colour does."""
    from trustfm.audit.attributions.methods import AttributionResult, MethodFaithfulness, attribution_audit
    from trustfm.results import Interval

    images = np.full((6, 16, 16, 3), 230, dtype=np.uint8)
    for i in range(6):
        images[i, 3 + i % 3:9 + i % 3, 1:6] = 20  # a dark square in the left half
    result = attribution_audit(LeftDark(), images, np.ones(6, dtype=np.int64), ["a", "b"], dataset="x",
                               bootstrap=Bootstrap(200, 0.95, 0), seed=0, examples=1)
    assert result.baseline_rgb == pytest.approx([230 / 255] * 3) and "median colour (RGB 230, 230, 230)" in result.baseline
    for method in result.methods:
        assert method.faithfulness_gain.low > 0, method
    assert result.flags() == []
    worse = MethodFaithfulness(method="saliency", deletion_auc=Interval(value=0.6), random_deletion_auc=Interval(value=0.5),
                               faithfulness_gain=Interval(value=-0.008, low=-0.012, high=-0.003, confidence=0.95),
                               curve=[1.0])
    flagged = result.model_copy(update={"methods": [worse]}).flags()
    assert len(flagged) == 1 and "saliency" in flagged[0] and "below 0" in flagged[0]
    assert isinstance(result, AttributionResult)


def test_data_quality_finds_the_planted_label_noise_in_images(tmp_path):
    """The shapes generator flips 15% of the dark images' labels; row i's true shape is SHAPES[(i - 1) % 3]. Label
    issues come from the pretrained backbone's features (at 64 px: at 32 the shapes are too small for them)."""
    import csv

    from conftest import image_overrides
    from trustfm.audit.data_quality.plugin import audit_data_quality_run
    from trustfm.config import load_config
    from trustfm.data.image_datasets import SHAPES, write_shapes
    from trustfm.pipeline import train_and_evaluate

    table = write_shapes(tmp_path / "shapes", n=300, size=64, seed=1)
    rows = list(csv.DictReader(table.open()))
    noisy = {i + 1 for i, row in enumerate(rows) if row["label"] != SHAPES[i % 3]}
    config = load_config(None, image_overrides(table, tmp_path / "run", **{"data.image.size": 64, "train.epochs": 1}))
    run = train_and_evaluate(config, show_progress=False).root
    result = audit_data_quality_run(run)["data_quality"]
    flagged = [issue.row for issue in result.worst_label_issues]
    assert flagged and sum(row in noisy for row in flagged) >= 0.6 * len(flagged), (flagged, sorted(noisy))
    assert result.rows == json.loads((run / "run.json").read_text())["rows"]["train"]


def test_an_image_is_corrupted_the_same_whatever_sample_order_or_batch_it_is_in():
    from trustfm.audit.corruption.corruptions import CORRUPTIONS, corrupt

    images = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    for name in CORRUPTIONS:
        together = corrupt(images, name, 3, seed=7)
        assert (corrupt(images[::-1], name, 3, seed=7) == together[::-1]).all(), name
        assert (corrupt(images[2:3], name, 3, seed=7) == together[2:3]).all(), name
    assert not (corrupt(images, "gaussian_noise", 3, seed=8) == corrupt(images, "gaussian_noise", 3, seed=7)).all()
