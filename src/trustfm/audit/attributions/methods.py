"""Pixel attributions from Captum (integrated gradients, saliency) and their faithfulness by deletion.

For each image the attribution of the predicted class is summed over colour channels (saliency: Captum's absolute
gradient, its largest channel) into one (h, w) map. Faithfulness is the deletion test of Petsiuk et al. (RISE,
BMVC 2018): pixels are set to black (the integrated-gradients baseline), most important first, in ``steps`` equal
shares, and the predicted class's probability is tracked; the area under that curve over the deleted share [0, 1]
is low when the map finds the pixels the model relies on. The same deletion in a random order (seeded) is the baseline:
``faithfulness_gain`` = random AUC - method AUC, above 0 when the map beats chance.
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

    def metrics(self) -> dict[str, float]:
        out = {}
        for m in self.methods:
            out[f"{m.method}.deletion_auc"] = m.deletion_auc.value
            out[f"{m.method}.faithfulness_gain"] = m.faithfulness_gain.value
        return out


def attribution_maps(model, pixels, targets, method: str, *, ig_steps: int = 32):
    """(n, h, w) attribution maps of ``targets`` for ``pixels`` (n, 3, h, w) in [0, 1]."""
    from trustfm._deps import optional_import

    captum = optional_import("captum.attr", "explain")

    def forward(x):
        return model(pixel_values=x)

    if method == "integrated_gradients":
        attributions = captum.IntegratedGradients(forward).attribute(
            pixels, baselines=pixels * 0, target=targets, n_steps=ig_steps, internal_batch_size=64)
        return attributions.sum(dim=1).detach().numpy()
    if method == "saliency":
        inputs = pixels.detach().clone().requires_grad_(True)
        return captum.Saliency(forward).attribute(inputs, target=targets, abs=True).max(dim=1).values.detach().numpy()
    raise ValueError(f"unknown attribution method {method!r}; choose from {METHODS}")


def deletion_curve(model, image, target: int, order: np.ndarray, steps: int):
    """Predicted-class probability (steps + 1,) as the pixels of ``order`` (flat h*w indices, most important first)
    of ``image`` (3, h, w) are set to black, ``steps`` equal shares at a time."""
    import torch

    _, height, width = image.shape
    fill = torch.zeros_like(image)
    versions = []
    for k in range(steps + 1):
        mask = torch.zeros(height * width, dtype=torch.bool)
        mask[torch.from_numpy(order[: round(k / steps * height * width)])] = True
        versions.append(torch.where(mask.view(1, height, width), fill, image))
    with torch.inference_mode():
        return torch.softmax(model(pixel_values=torch.stack(versions)), dim=-1)[:, target].numpy()


def attribution_audit(model, images: np.ndarray, labels: np.ndarray, label_names: list[str], *, dataset: str,
                      bootstrap, seed: int, methods=METHODS, steps: int = 16, ig_steps: int = 32,
                      examples: int = 4) -> AttributionResult:
    """Attribute the predicted class of each image (n, h, w, 3) uint8 and score each method by deletion."""
    import torch

    from trustfm.data.images import heatmap_overlay, png_data_uri

    model.eval()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():  # not inference mode: the targets go on into Captum's autograd
        predicted = model(pixel_values=pixels).argmax(dim=1)
    rng = np.random.default_rng(seed)
    n, height, width = len(images), images.shape[1], images.shape[2]
    random_orders = [rng.permutation(height * width) for _ in range(n)]
    shares = np.linspace(0.0, 1.0, steps + 1)
    random_auc = np.array([np.trapezoid(deletion_curve(model, pixels[i], int(predicted[i]), random_orders[i], steps),
                                        shares) for i in range(n)])
    scores, maps_by_method = [], {}
    for method in methods:
        maps = attribution_maps(model, pixels, predicted, method, ig_steps=ig_steps)
        maps_by_method[method] = maps
        curves = np.stack([deletion_curve(model, pixels[i], int(predicted[i]),
                                          np.argsort(-maps[i].ravel(), kind="stable"), steps) for i in range(n)])
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
                             examples=shown)
