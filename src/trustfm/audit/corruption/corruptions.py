"""Common corruptions at five severities, after ImageNet-C (Hendrycks & Dietterich, ICLR 2019), and what they do to
a model's accuracy.

Each corruption takes uint8 images (n, h, w, 3) and a severity 1..5 and returns corrupted uint8 images. The
parameters are ImageNet-C's, stated per severity:

- ``gaussian_noise``: additive N(0, c^2) in [0, 1] pixel units, c = .08, .12, .18, .26, .38;
- ``gaussian_blur``: Gaussian blur of standard deviation sigma = 1, 2, 3, 4, 6 pixels at 224 px, scaled to the
  image's side (sigma * side / 224), so a severity blurs the same share of the image at any size;
- ``jpeg``: JPEG re-encoding at quality 25, 18, 15, 10, 7;
- ``brightness``: HSV value raised by c = .1, .2, .3, .4, .5 (clipped to 1).

:func:`corrupt` is the one way to apply them: an image's random draws come from (seed, corruption, severity,
the image's own bytes), so one image gets the same corruption whatever sample, order or batch it is in, and the
corruption audit and ``audit compare`` judge the very same corrupted images.

The result holds, per corruption and severity, accuracy and flip rate (share of images whose predicted class
changes from the clean one) with bootstrap intervals, the mean over severities, and the corruption error relative
to the clean error.
"""

from __future__ import annotations

import io
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, Result

SEVERITIES = (1, 2, 3, 4, 5)
NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR_SIGMA_AT_224 = (1.0, 2.0, 3.0, 4.0, 6.0)
JPEG_QUALITY = (25, 18, 15, 10, 7)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    noisy = images / 255.0 + rng.normal(0.0, NOISE_STD[severity - 1], size=images.shape)
    return (np.clip(noisy, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = BLUR_SIGMA_AT_224[severity - 1] * images.shape[1] / 224.0
    blurred = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
    return np.clip(blurred, 0, 255).round().astype(np.uint8)


def jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
        out[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(images / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + BRIGHTNESS_SHIFT[severity - 1], 0.0, 1.0)
    return (hsv_to_rgb(hsv) * 255.0).round().astype(np.uint8)


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "jpeg": jpeg, "brightness": brightness,
}


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """``images`` (n, h, w, 3) uint8 under corruption ``name`` at ``severity``; each image's random draws are seeded
    by ``seed``, the corruption, the severity and the image's bytes (not its position)."""
    import zlib

    apply = CORRUPTIONS[name]
    tag = zlib.crc32(name.encode())
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = np.random.default_rng([seed, tag, severity, zlib.crc32(np.ascontiguousarray(image).tobytes())])
        out[i] = apply(image[None], severity, rng)[0]
    return out


class SeverityScore(BaseModel):
    severity: int  # 1 (mild) .. 5 (severe)
    accuracy: Interval
    flip_rate: Interval  # share of images whose predicted class differs from the clean prediction


class CorruptionScore(BaseModel):
    corruption: str
    severities: list[SeverityScore]
    mean_accuracy: float  # over the five severities
    relative_error: float | None  # (mean corrupted error - clean error) / clean error; None when the clean error is 0


class CorruptionExample(BaseModel):
    """One evaluation image under every corruption at one severity (PNG data URIs)."""

    severity: int
    label: str
    clean: str
    clean_prediction: str
    corrupted: dict[str, str]  # corruption -> image
    predictions: dict[str, str]  # corruption -> predicted class


class CorruptionResult(Result):
    kind: Literal["corruption"] = "corruption"
    title = "Corruption robustness"
    dataset: str
    images: int
    clean_accuracy: Interval
    corruptions: list[CorruptionScore]
    mean_accuracy: float  # over every corruption and severity
    worst_accuracy: float  # the lowest accuracy of any corruption at any severity
    mean_flip_rate: float
    examples: list[CorruptionExample] = []

    def metrics(self) -> dict[str, float]:
        out = {"clean_accuracy": self.clean_accuracy.value, "mean_accuracy": self.mean_accuracy,
               "worst_accuracy": self.worst_accuracy, "mean_flip_rate": self.mean_flip_rate}
        for score in self.corruptions:
            out[f"{score.corruption}.mean_accuracy"] = score.mean_accuracy
        return out


def corruption_suite(images: np.ndarray, labels: np.ndarray, predict_proba: Callable, label_names: list[str], *,
                     dataset: str, bootstrap, seed: int, corruptions: tuple[str, ...] = tuple(CORRUPTIONS),
                     severities: tuple[int, ...] = SEVERITIES, examples: int = 2) -> CorruptionResult:
    """Accuracy and flip rate of ``predict_proba`` (list of uint8 (h, w, 3) images -> (n, k)) on ``images``
    (n, h, w, 3) uint8 with gold ``labels`` (n,), under each corruption and severity. ``bootstrap``: an
    :class:`~trustfm.audit.context.Bootstrap`. ``examples``: images shown per corruption (at severity 3)."""
    from trustfm.data.images import png_data_uri

    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        from trustfm.errors import ConfigError

        raise ConfigError(f"unknown corruption {unknown}: choose from {', '.join(CORRUPTIONS)}")
    clean_pred = predict_proba(list(images)).argmax(axis=1)
    clean_correct = clean_pred == labels
    clean_error = 1.0 - float(clean_correct.mean())
    scores, all_acc, all_flip = [], [], []
    shown_severity = 3 if 3 in severities else severities[len(severities) // 2]
    shown = {}
    for name in corruptions:
        rows = []
        for severity in severities:
            corrupted = corrupt(images, name, severity, seed=seed)
            pred = predict_proba(list(corrupted)).argmax(axis=1)
            rows.append(SeverityScore(severity=severity, accuracy=bootstrap.mean(pred == labels),
                                      flip_rate=bootstrap.mean(pred != clean_pred)))
            if severity == shown_severity:
                shown[name] = (corrupted[:examples], pred[:examples])
        mean_acc = float(np.mean([r.accuracy.value for r in rows]))
        scores.append(CorruptionScore(
            corruption=name, severities=rows, mean_accuracy=mean_acc,
            relative_error=((1 - mean_acc) - clean_error) / clean_error if clean_error > 0 else None))
        all_acc += [r.accuracy.value for r in rows]
        all_flip += [r.flip_rate.value for r in rows]
    shown_examples = [
        CorruptionExample(severity=shown_severity, label=label_names[labels[i]], clean=png_data_uri(images[i]),
                          clean_prediction=label_names[clean_pred[i]],
                          corrupted={n: png_data_uri(shown[n][0][i]) for n in shown},
                          predictions={n: label_names[shown[n][1][i]] for n in shown})
        for i in range(min(examples, len(images)))]
    return CorruptionResult(dataset=dataset, images=len(images), clean_accuracy=bootstrap.mean(clean_correct),
                            corruptions=scores, mean_accuracy=float(np.mean(all_acc)),
                            worst_accuracy=float(np.min(all_acc)), mean_flip_rate=float(np.mean(all_flip)),
                            examples=shown_examples)
