"""L-infinity gradient attacks on an image classifier's pixels: FGSM and PGD.

One implementation serves adversarial training (:mod:`trustfm.train.robust`) and the adversarial audit
(:mod:`trustfm.audit.adversarial`). Pixels are in [0, 1]; ``epsilon`` and ``step`` are in the same units (8/255 is
the usual CIFAR radius). Both follow the reference definitions, as the Adversarial Robustness Toolbox implements them:

- FGSM (Goodfellow et al., 2015): ``x + epsilon * sign(grad_x loss)``, clipped to [0, 1];
- PGD (Madry et al., 2018): from a uniform random start in the epsilon ball (or from ``x``), ``steps`` steps of
  ``step * sign(grad)``, each projected back onto the ball and [0, 1].

The loss is the mean cross-entropy against the given labels (untargeted). The model's train/eval mode is left as
it is: the audit attacks an eval-mode model, training attacks the model as it trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _input_gradient(model, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    pixels = pixels.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(pixel_values=pixels), labels)
        (grad,) = torch.autograd.grad(loss, pixels)
    return grad


def fgsm(model, pixels: torch.Tensor, labels: torch.Tensor, *, epsilon: float) -> torch.Tensor:
    """Adversarial copies of ``pixels`` (b, 3, h, w) in [0, 1], each at most ``epsilon`` from its original."""
    grad = _input_gradient(model, pixels, labels)
    return (pixels + epsilon * grad.sign()).clamp(0.0, 1.0).detach()


def pgd(model, pixels: torch.Tensor, labels: torch.Tensor, *, epsilon: float, step: float, steps: int,
        random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """``steps`` projected sign-gradient steps of size ``step`` inside the L-infinity ball of radius ``epsilon``."""
    original = pixels.detach()
    adversarial = original.clone()
    if random_start:
        noise = torch.rand(original.shape, generator=generator) * 2 - 1
        adversarial = (original + epsilon * noise).clamp(0.0, 1.0)
    for _ in range(steps):
        grad = _input_gradient(model, adversarial, labels)
        adversarial = adversarial + step * grad.sign()
        adversarial = torch.min(torch.max(adversarial, original - epsilon), original + epsilon).clamp(0.0, 1.0)
    return adversarial.detach()
