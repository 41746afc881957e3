"""FGSM and PGD (L-infinity, untargeted) against an image model, at stated radii in pixel units.

The attacks are :mod:`trustfm.models.pixel_attacks` (the same code adversarial training uses); they are checked
against the Adversarial Robustness Toolbox's ``FastGradientMethod`` and ``ProjectedGradientDescent`` on the same
model in the test suite. For each attack and radius the result gives:

- robust accuracy: the share of all sampled images still classified correctly after the attack;
- attack success rate: among images the model classified correctly, the share the attack turns wrong.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, Result

DEFAULT_EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


def eps_name(epsilon: float) -> str:
    """``8/255`` for 8/255, else the number: radii are usually stated in 255ths."""
    in_255 = epsilon * 255
    return f"{round(in_255)}/255" if abs(in_255 - round(in_255)) < 1e-6 else f"{epsilon:g}"


class AttackScore(BaseModel):
    attack: Literal["fgsm", "pgd"]
    epsilon: float  # L-infinity radius, pixel units in [0, 1]
    epsilon_255: str  # the same, as k/255
    steps: int  # gradient steps (1 for FGSM)
    step_size: float  # pixel units
    robust_accuracy: Interval
    success_rate: Interval  # among clean-correct images; value 0 when none is correct
    mean_linf: float  # mean L-infinity distance actually used, pixel units (<= epsilon)


class AdversarialExample(BaseModel):
    attack: str
    epsilon_255: str
    label: str
    clean: str  # PNG data URI
    clean_prediction: str
    adversarial: str
    adversarial_prediction: str
    perturbation: str  # the difference, amplified to the full range so it can be seen


class AdversarialResult(Result):
    kind: Literal["adversarial"] = "adversarial"
    title = "Adversarial robustness (FGSM, PGD)"
    dataset: str
    images: int
    clean_accuracy: Interval
    pgd_steps: int
    attacks: list[AttackScore]
    examples: list[AdversarialExample] = []

    def metrics(self) -> dict[str, float]:
        out = {"clean_accuracy": self.clean_accuracy.value}
        for score in self.attacks:
            key = f"{score.attack}_eps{score.epsilon_255.replace('/255', '')}"
            out[f"{key}.robust_accuracy"] = score.robust_accuracy.value
            out[f"{key}.success_rate"] = score.success_rate.value
        out["worst_robust_accuracy"] = min((s.robust_accuracy.value for s in self.attacks), default=1.0)
        return out


def attack_suite(model, images: np.ndarray, labels: np.ndarray, label_names: list[str], *, dataset: str,
                 bootstrap, seed: int, epsilons=DEFAULT_EPSILONS, pgd_steps: int = 10, batch_size: int = 32,
                 examples: int = 2) -> AdversarialResult:
    """Attack ``model`` (an eval-mode image classifier taking ``pixel_values``) on ``images`` (n, h, w, 3) uint8
    with gold ``labels`` (n,). PGD takes ``pgd_steps`` steps of 2.5 * epsilon / steps from a seeded random start."""
    import torch

    from trustfm.data.images import png_data_uri
    from trustfm.models.pixel_attacks import fgsm, pgd

    model.eval()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def predict(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([model(pixel_values=x[i:i + batch_size]).argmax(1)
                              for i in range(0, len(x), batch_size)]).numpy()

    clean_pred = predict(pixels)
    clean_correct = clean_pred == labels
    scores, shown = [], []
    generator = torch.Generator().manual_seed(seed)
    for attack in ("fgsm", "pgd"):
        for epsilon in epsilons:
            steps, step = (1, epsilon) if attack == "fgsm" else (pgd_steps, 2.5 * epsilon / pgd_steps)
            parts = []
            for i in range(0, len(pixels), batch_size):
                x, y = pixels[i:i + batch_size], targets[i:i + batch_size]
                parts.append(fgsm(model, x, y, epsilon=epsilon) if attack == "fgsm" else
                             pgd(model, x, y, epsilon=epsilon, step=step, steps=steps, generator=generator))
            adversarial = torch.cat(parts)
            pred = predict(adversarial)
            correct = pred == labels
            success = bootstrap.mean(~correct[clean_correct]) if clean_correct.any() else Interval(value=0.0)
            scores.append(AttackScore(attack=attack, epsilon=epsilon, epsilon_255=eps_name(epsilon), steps=steps,
                                      step_size=step, robust_accuracy=bootstrap.mean(correct), success_rate=success,
                                      mean_linf=float((adversarial - pixels).abs().flatten(1).max(1).values.mean())))
            if epsilon == max(epsilons):
                adv_images = (adversarial.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
                for i in range(min(examples, len(images))):
                    delta = adversarial[i] - pixels[i]
                    scale = float(delta.abs().max()) or 1.0
                    seen = ((delta / scale * 0.5 + 0.5).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                    shown.append(AdversarialExample(
                        attack=attack, epsilon_255=eps_name(epsilon), label=label_names[labels[i]],
                        clean=png_data_uri(images[i]), clean_prediction=label_names[clean_pred[i]],
                        adversarial=png_data_uri(adv_images[i]), adversarial_prediction=label_names[pred[i]],
                        perturbation=png_data_uri(seen)))
    return AdversarialResult(dataset=dataset, images=len(images), clean_accuracy=bootstrap.mean(clean_correct),
                             pgd_steps=pgd_steps, attacks=scores, examples=shown)
