"""Robust training as callbacks: adversarial training in embedding space and Gaussian embedding noise.

All perturbations act on the word-embedding output (shape (batch, tokens,
hidden)) before position embeddings are added, and only at real tokens
(padding stays untouched). ``epsilon`` and noise ``std`` are in units of the
word-embedding matrix's root-mean-square entry times sqrt(hidden), i.e.
relative to a typical token embedding's L2 norm, so the same setting means the
same thing on any encoder.

- FGM (Miyato et al., 2017): one step of size epsilon along the normalised
  gradient; the adversarial loss's gradients are added to the clean ones.
- PGD (Madry et al., 2018): ``steps`` normalised gradient steps of size
  ``alpha``, projected onto the epsilon ball per token; the last step's loss
  adds its gradients.
- FreeLB (Zhu et al., 2020): ``steps`` ascent steps from a random start, the
  parameter gradients of every step's loss accumulated (each scaled by
  1/steps), so the model is trained on the whole ascent path.

The clean loss's gradients are already in ``.grad`` when ``on_after_backward``
runs; these callbacks add to them. The embedding-gradient of the clean loss is
captured by a forward hook that retains the embedding output's gradient.
"""

from __future__ import annotations

import torch

from trustfm.train.callbacks import Callback
from trustfm.train.loop import batch_loss


def embedding_scale(model) -> float:
    """Typical L2 norm of one token embedding: RMS entry of the word-embedding matrix × sqrt(hidden)."""
    weight = model.input_embeddings().weight.detach()
    return float(weight.pow(2).mean().sqrt() * weight.shape[1] ** 0.5)


def _per_token_normalise(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return grad / norm * mask


def _project(delta: torch.Tensor, radius: float) -> torch.Tensor:
    norm = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return delta * torch.clamp(radius / norm, max=1.0)


class AdversarialTraining(Callback):
    """``method`` in {"fgm", "pgd", "freelb"}; ``epsilon`` relative to a token embedding's norm (see module doc)."""

    def __init__(self, *, method: str, epsilon: float, steps: int = 3, alpha: float | None = None, seed: int = 0):
        if method not in ("fgm", "pgd", "freelb"):
            raise ValueError(f"adversarial method must be fgm, pgd or freelb, not {method!r}")
        self.method = method
        self.epsilon = epsilon
        self.steps = 1 if method == "fgm" else steps
        self.alpha = alpha
        self.seed = seed
        self._handle = None
        self._embedded: torch.Tensor | None = None
        self._radius = 0.0
        self._attacking = False

    def on_fit_start(self, trainer) -> None:
        model = trainer.model
        self._radius = self.epsilon * embedding_scale(model)

        def keep_output(module, inputs, output):
            if module.training and output.requires_grad and not self._attacking:
                output.retain_grad()
                self._embedded = output

        self._handle = model.input_embeddings().register_forward_hook(keep_output)

    def on_fit_end(self, trainer) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _alpha(self, model) -> float:
        return self.alpha * embedding_scale(model) if self.alpha else self._radius / self.steps * 1.5

    def adversarial_delta(self, model, batch: dict, clean_grad: torch.Tensor) -> torch.Tensor:
        """FGM/PGD perturbation (batch, tokens, hidden) of the word embeddings, each token's norm <= the radius."""
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        if self.method == "fgm":
            return self._radius * _per_token_normalise(clean_grad, mask)
        alpha = self._alpha(model)
        delta = _project(alpha * _per_token_normalise(clean_grad, mask), self._radius)
        for _ in range(self.steps - 1):
            delta = delta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._loss_at(model, batch, delta), delta)
            delta = _project(delta + alpha * _per_token_normalise(grad, mask), self._radius)
        return delta

    def _loss_at(self, model, batch: dict, delta: torch.Tensor) -> torch.Tensor:
        embeds = model.input_embeddings()(batch["input_ids"]) + delta
        return batch_loss(model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]), batch)

    def on_after_backward(self, trainer, batch: dict) -> None:
        self._attacking = True
        try:
            self._attack(trainer, batch)
        finally:
            self._attacking = False

    def _attack(self, trainer, batch: dict) -> None:
        model = trainer.model
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        clean_grad = self._embedded.grad if self._embedded is not None else None
        self._embedded = None
        if clean_grad is None:
            return
        if self.method in ("fgm", "pgd"):
            self._loss_at(model, batch, self.adversarial_delta(model, batch, clean_grad).detach()).backward()
            return
        radius, alpha = self._radius, self._alpha(model)
        # FreeLB: random start inside the ball, then ascend, accumulating parameter gradients along the way
        generator = torch.Generator().manual_seed(self.seed + trainer.state.global_step)
        delta = (torch.rand(clean_grad.shape, generator=generator) * 2 - 1) * mask
        delta = _project(delta * radius / (clean_grad.shape[-1] ** 0.5), radius)
        for _ in range(self.steps):
            delta = delta.detach().requires_grad_(True)
            (self._loss_at(model, batch, delta) / self.steps).backward()
            delta = _project(delta + alpha * _per_token_normalise(delta.grad, mask), radius)


class EmbeddingNoise(Callback):
    """Gaussian noise on word embeddings while training: std relative to a token embedding's norm, per entry."""

    def __init__(self, *, std: float):
        self.std = std
        self._handle = None

    def on_fit_start(self, trainer) -> None:
        model = trainer.model
        per_entry = self.std * embedding_scale(model) / model.input_embeddings().weight.shape[1] ** 0.5

        def add_noise(module, inputs, output):
            if module.training:
                return output + torch.randn_like(output) * per_entry
            return output

        self._handle = model.input_embeddings().register_forward_hook(add_noise)

    def on_fit_end(self, trainer) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class PixelAdversarialTraining(Callback):
    """Adversarial training of an image model: after each clean backward, the loss on FGSM (``fgm``) or PGD
    (``pgd``) copies of the batch adds its gradients. ``epsilon`` and ``alpha`` are L-infinity radii in pixel units
    ([0, 1]); PGD takes ``steps`` steps of ``alpha`` (default 2.5 * epsilon / steps) from a random start."""

    def __init__(self, *, method: str, epsilon: float, steps: int = 3, alpha: float | None = None, seed: int = 0):
        if method not in ("fgm", "pgd"):
            raise ValueError(f"image adversarial training is fgm or pgd, not {method!r}")
        self.method, self.epsilon, self.steps, self.seed = method, epsilon, steps, seed
        self.alpha = alpha or 2.5 * epsilon / steps

    def on_after_backward(self, trainer, batch: dict) -> None:
        from trustfm.models.pixel_attacks import fgsm, pgd

        model, pixels, labels = trainer.model, batch["pixel_values"], batch["labels"]
        if self.method == "fgm":
            adversarial = fgsm(model, pixels, labels, epsilon=self.epsilon)
        else:
            generator = torch.Generator().manual_seed(self.seed + trainer.state.global_step)
            adversarial = pgd(model, pixels, labels, epsilon=self.epsilon, step=self.alpha, steps=self.steps,
                              generator=generator)
        batch_loss(model(pixel_values=adversarial), batch).backward()


def robustness_callbacks(config, *, seed: int, modality: str = "text") -> list[Callback]:
    """The callbacks a :class:`~trustfm.config.schema.RobustnessConfig` asks for (noise first, then adversarial)."""
    callbacks: list[Callback] = []
    if config.embedding_noise > 0:
        callbacks.append(EmbeddingNoise(std=config.embedding_noise))
    adv = config.adversarial_training
    if adv is not None and modality == "image":
        callbacks.append(PixelAdversarialTraining(method=adv.method, epsilon=adv.epsilon, steps=adv.steps,
                                                  alpha=adv.alpha, seed=seed))
    elif adv is not None:
        callbacks.append(AdversarialTraining(method=adv.method, epsilon=adv.epsilon, steps=adv.steps,
                                             alpha=adv.alpha, seed=seed))
    return callbacks
