"""Pixel attributions from Captum (integrated gradients, saliency) and their faithfulness by deletion.

For each image the attribution of the predicted class is summed over colour channels (saliency: Captum's absolute
gradient, its largest channel) into one (h, w) map. Faithfulness is the deletion test of Petsiuk et al. (RISE,
BMVC 2018): pixels are replaced by a baseline colour, most important first, in ``steps`` equal shares, and the
predicted class's probability is tracked; the area under that curve over the deleted share [0, 1] is low when the
map finds the pixels the model relies on. The same deletion in a random order (seeded) is the reference:
``faithfulness_gain`` = random AUC - method AUC, above 0 when the map beats chance.

The baseline colour comes from the data: the audited images' per-channel median. Black removes nothing where the
objects are dark on a light background (deleting to black then adds what it should remove, and every map scores
below chance); the median is the background wherever one colour dominates, and a neutral colour otherwise.
Integrated gradients integrates from the same baseline. A gain whose interval lies below 0 is flagged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, Result

METHODS = ("integrated_gradients", "saliency")


class MethodFaithfulness(BaseModel):
    method: str
    deletion_auc: Interval  # mean over images of the area under the probability-vs-deleted-share curve, [0, 1]
    random_deletion_auc: Interval  # the same with pixels deleted in a random order
    faithfulness_gain: Interval  # random - method, per image; > 0: the attribution beats chance
    curve: list[float]  # mean predicted-class probability at each deleted share 0, 1/steps, ..., 1


class AttributionExample(BaseModel):
    label: str
    prediction: str
    image: str  # PNG data URI
    maps: dict[str, str]  # method -> heat map over the image (red: for the predicted class, blue: against)


class AttributionResult(Result):
    kind: Literal["attributions"] = "attributions"
    title = "Attributions (integrated gradients, saliency)"
    dataset: str
    images: int
    steps: int  # deletion steps
    ig_steps: int  # integrated-gradients path steps
    methods: list[MethodFaithfulness]
    examples: list[AttributionExample] = []
    # the colour deleted pixels take (and integrated gradients starts from), RGB in [0, 1], and how it was chosen
    baseline_rgb: list[float] = [0.0, 0.0, 0.0]
    baseline: str = "black"

    def flags(self) -> list[str]:
        """A method whose faithfulness gain interval lies below 0: its maps point away from what the model uses
        (or the deletion baseline does not remove information on these images)."""
        return [f"attributions: {m.method}'s faithfulness gain {m.faithfulness_gain.value:+.3f} "
                f"[{m.faithfulness_gain.low:+.3f}, {m.faithfulness_gain.high:+.3f}] lies below 0 (worse than deleting "
                f"pixels at random, with the {self.baseline} baseline): do not read its maps as explanations"
                for m in self.methods if m.faithfulness_gain.high is not None and m.faithfulness_gain.high < 0]

    def metrics(self) -> dict[str, float]:
        out = {}
        for m in self.methods:
            out[f"{m.method}.deletion_auc"] = m.deletion_auc.value
            out[f"{m.method}.faithfulness_gain"] = m.faithfulness_gain.value
        return out


BASELINES = ("median", "black")


def deletion_baseline(images: np.ndarray, kind: str = "median") -> tuple[np.ndarray, str]:
    """The colour a deleted pixel takes, as (3,) floats in [0, 1], and a description for the report: ``"median"``,
    the per-channel median of ``images`` (n, h, w, 3) uint8; ``"black"``."""
    if kind not in BASELINES:
        raise ValueError(f"deletion baseline must be one of {BASELINES}, not {kind!r}")
    if kind == "black":
        return np.zeros(3, dtype=np.float32), "black (RGB 0, 0, 0), as asked"
    rgb = np.median(images.reshape(-1, 3), axis=0) / 255.0
    return rgb.astype(np.float32), "the audited images' median colour (RGB " + ", ".join(
        f"{int(round(v * 255))}" for v in rgb) + ")"


def attribution_maps(model, pixels, targets, method: str, *, ig_steps: int = 32, baseline=None):
    """(n, h, w) attribution maps of ``targets`` for ``pixels`` (n, 3, h, w) in [0, 1]; integrated gradients
    starts from ``baseline`` ((3,) colour; default black)."""
    from trustfm._deps import optional_import

    captum = optional_import("captum.attr", "explain")

    def forward(x):
        return model(pixel_values=x)

    if method == "integrated_gradients":
        start = pixels * 0 if baseline is None else (pixels * 0 + baseline.view(1, 3, 1, 1))
        attributions = captum.IntegratedGradients(forward).attribute(
            pixels, baselines=start, target=targets, n_steps=ig_steps, internal_batch_size=64)
        return attributions.sum(dim=1).detach().numpy()
    if method == "saliency":
        inputs = pixels.detach().clone().requires_grad_(True)
        return captum.Saliency(forward).attribute(inputs, target=targets, abs=True).max(dim=1).values.detach().numpy()
    raise ValueError(f"unknown attribution method {method!r}; choose from {METHODS}")


def deletion_curve(model, image, target: int, order: np.ndarray, steps: int, fill_rgb=None):
    """Predicted-class probability (steps + 1,) as the pixels of ``order`` (flat h*w indices, most important first)
    of ``image`` (3, h, w) are set to ``fill_rgb`` ((3,) tensor; default black), ``steps`` equal shares at a time."""
    import torch

    _, height, width = image.shape
    fill = torch.zeros_like(image) if fill_rgb is None else torch.zeros_like(image) + fill_rgb.view(3, 1, 1)
    versions = []
    for k in range(steps + 1):
        mask = torch.zeros(height * width, dtype=torch.bool)
        mask[torch.from_numpy(order[: round(k / steps * height * width)])] = True
        versions.append(torch.where(mask.view(1, height, width), fill, image))
    with torch.inference_mode():
        return torch.softmax(model(pixel_values=torch.stack(versions)), dim=-1)[:, target].numpy()


def attribution_audit(model, images: np.ndarray, labels: np.ndarray, label_names: list[str], *, dataset: str,
                      bootstrap, seed: int, methods=METHODS, steps: int = 16, ig_steps: int = 32,
                      examples: int = 4, baseline: str = "median") -> AttributionResult:
    """Attribute the predicted class of each image (n, h, w, 3) uint8 and score each method by deletion towards
    ``baseline`` (see :func:`deletion_baseline`)."""
    import torch

    from trustfm.data.images import heatmap_overlay, png_data_uri

    model.eval()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():  # not inference mode: the targets go on into Captum's autograd
        predicted = model(pixel_values=pixels).argmax(dim=1)
    rng = np.random.default_rng(seed)
    n, height, width = len(images), images.shape[1], images.shape[2]
    rgb, described = deletion_baseline(images, baseline)
    fill = torch.from_numpy(rgb)
    random_orders = [rng.permutation(height * width) for _ in range(n)]
    shares = np.linspace(0.0, 1.0, steps + 1)
    random_auc = np.array([np.trapezoid(deletion_curve(model, pixels[i], int(predicted[i]), random_orders[i], steps,
                                                       fill), shares) for i in range(n)])
    scores, maps_by_method = [], {}
    for method in methods:
        maps = attribution_maps(model, pixels, predicted, method, ig_steps=ig_steps, baseline=fill)
        maps_by_method[method] = maps
        curves = np.stack([deletion_curve(model, pixels[i], int(predicted[i]),
                                          np.argsort(-maps[i].ravel(), kind="stable"), steps, fill) for i in range(n)])
        auc = np.trapezoid(curves, shares, axis=1)
        scores.append(MethodFaithfulness(method=method, deletion_auc=bootstrap.mean(auc),
                                         random_deletion_auc=bootstrap.mean(random_auc),
                                         faithfulness_gain=bootstrap.mean(random_auc - auc),
                                         curve=[float(v) for v in curves.mean(axis=0)]))
    shown = [AttributionExample(label=label_names[labels[i]], prediction=label_names[int(predicted[i])],
                                image=png_data_uri(images[i]),
                                maps={m: png_data_uri(heatmap_overlay(images[i], maps_by_method[m][i]))
                                      for m in methods})
             for i in range(min(examples, n))]
    return AttributionResult(dataset=dataset, images=n, steps=steps, ig_steps=ig_steps, methods=scores,
                             examples=shown, baseline_rgb=[float(v) for v in rgb], baseline=described)
