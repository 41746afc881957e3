"""Differentially private fine-tuning (DP-SGD with Opacus) as a callback (the ledger: :mod:`trustfm.train.ledger`).

:class:`DPSGD` joins the one training loop like any other callback:

- ``on_fit_start`` attaches the per-example clipping to the model (the model
  object itself is unchanged, so saving and inference see the plain
  classifier). ``clipping="bookkeeping"`` (default) is
  :class:`trustfm.train.dp_clipping.BookkeepingClipper`: one backward pass, no
  per-example gradients materialised, about 1.2x a plain step; it also sets
  the loop's ``micro_batch_size`` so that each Poisson batch is run as
  length-sorted micro-batches. ``"opacus"`` attaches Opacus's
  per-sample-gradient hooks and wraps the optimizer in its ``DPOptimizer``
  (2x to 8x a plain step here, see benchmarks/dp_overhead.py). Both clip each example's
  gradient to ``max_grad_norm``, add Gaussian noise of std
  ``noise_multiplier * max_grad_norm`` to the sum and divide by the expected
  batch size ``q N``; they agree to float rounding.
- ``on_epoch_batches`` replaces the length-bucketed batches with Poisson
  sampling: each training row joins each step's batch independently with
  probability ``q = 1 / steps_per_epoch`` (what the accountant assumes).
- The sampling and the noise come from secret per-epoch randomness
  (:mod:`trustfm.train.dp_noise`), not from the run's ``seed``: anyone holding
  the config could otherwise regenerate the noise and remove it.
- ``on_step_end`` steps the accountant; ``on_epoch_end`` writes the epsilon
  spent so far into the epoch record (the log, TensorBoard and the report).

The noise multiplier is derived from the target epsilon, delta, ``q`` and the
number of epochs with Opacus's ``get_noise_multiplier``, so the run ends at the
target epsilon (up to Opacus's tolerance). Its accountant state is
checkpointed, so a resumed run accounts exactly like an uninterrupted one.

Which parameters train (``trainable``): ``all``; ``head`` (the linear head
only); ``top_layers`` (head plus the top ``top_layers`` encoder layers);
``bias`` (head plus every bias of the encoder layers: BitFit, Ben Zaken et
al. 2022, which Bu et al. 2022 found strong under DP); ``lora`` (adapters). Fewer
trainable parameters means less noise in total, often better utility per epsilon.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from trustfm.results import Result
from trustfm.train.callbacks import Callback


class DPAccounting(Result):
    """``results/privacy.json``: what a DP-SGD run spent, as its accountant computed it, and the dataset's ledger total."""

    kind: Literal["privacy"] = "privacy"
    dp: bool = True
    target_epsilon: float
    epsilon: float  # spent, at ``delta``
    delta: float
    accountant: str  # rdp | prv
    noise_multiplier: float
    sample_rate: float  # Poisson sampling probability per step
    max_grad_norm: float  # per-example clipping bound
    clipping: str | None = None
    trainable: str
    trainable_parameters: int
    data_sha256: str
    ledger: str
    dataset_epsilon_spent: float  # across every run in the ledger on this dataset
    dataset_total_epsilon: float | None = None  # the dataset's budget, when one is set


def default_delta(n_train: int) -> float:
    """A delta well below 1/N: the largest power of ten at most 1/(10 N)."""
    return 10.0 ** math.floor(math.log10(1.0 / (10 * max(n_train, 1))))


def set_trainable(model, trainable: str, *, top_layers: int = 2, lora_rank: int = 8, lora_alpha: float = 16.0) -> int:
    """Freeze all but the chosen parameters of a TextClassifier (``lora`` injects adapters first); returns the
    number of trainable parameters."""
    if trainable not in ("all", "head", "top_layers", "bias", "lora"):
        raise ValueError(f"trainable must be all, head, top_layers, bias or lora, not {trainable!r}")
    if not hasattr(model, "encoder") and trainable not in ("all", "head"):
        from trustfm.errors import ConfigError

        raise ConfigError(f"trainable: {trainable} chooses text-encoder layers; an image model trains all or head")
    if trainable == "lora":
        from trustfm.train.lora import add_lora

        return add_lora(model, rank=lora_rank, alpha=lora_alpha)
    if trainable != "all":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)
        layers = []
        if trainable in ("top_layers", "bias"):
            from trustfm.models.families import family_of

            layers = family_of(model.encoder, purpose=f"trainable: {trainable}").layers(model.encoder)
        if trainable == "top_layers":
            for layer in layers[max(0, len(layers) - top_layers):]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        if trainable == "bias":  # BitFit: every bias term of the encoder layers
            for name, p in layers.named_parameters():
                if name.endswith(".bias"):
                    p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_dp_trainable(model, dp) -> int:
    """The parameters DP-SGD trains under ``dp`` (a DPConfig): never the pooler or the embeddings, then
    ``dp.trainable``; returns the number of trainable parameters.

    The pooler is unused by our pooling (no per-example gradient would exist). The embedding tables stay frozen: a
    per-example gradient of the 30522 x 384 word table is 47 MB per example, and position and token-type
    embeddings are looked up with a batch dimension of 1, which Opacus cannot split per example.
    """
    for name, p in model.named_parameters():
        if any(part in f".{name}" for part in (".pooler.", ".embeddings.")):
            p.requires_grad_(False)
    encoder = getattr(model, "encoder", None)
    if (dp.trainable != "head" and getattr(getattr(encoder, "config", None), "relative_attention", False)
            and getattr(encoder.config, "model_type", "") in ("deberta-v2", "deberta")):
        from trustfm.errors import ConfigError

        raise ConfigError(f"privacy.dp.trainable: {dp.trainable} on DeBERTa: its attention projections also read the "
                          "relative position embeddings every example shares, so no per-example gradient of them "
                          "exists to clip; train the head only under DP (privacy.dp.trainable: head)")
    return set_trainable(model, dp.trainable, top_layers=dp.top_layers, lora_rank=dp.lora_rank,
                         lora_alpha=dp.lora_alpha)


class DPSGD(Callback):
    """DP-SGD to a target (epsilon, delta) over ``n_train`` rows; see the module doc."""

    def __init__(self, *, epsilon: float, delta: float, max_grad_norm: float, n_train: int, accountant: str = "rdp",
                 clipping: str = "bookkeeping", micro_batch_size: int = 32, secret_seed: int | None = None,
                 planned_epochs: int | None = None, extra_rows: int = 0):
        """``secret_seed`` (tests only) makes the sampling and noise reproducible, and so not secret: see
        :mod:`trustfm.train.dp_noise`. ``planned_epochs``: the epochs the target epsilon must cover (default: the
        trainer's); a federated client fits once per round, so it plans for every round's epochs and carries the
        accountant's history from round to round (``state_dict``). ``extra_rows``: rows after the ``n_train``
        planned ones (a privacy audit's included input canaries), sampled with the same rate but left out of the
        plan: the steps, the noise and the accounting are those of the run without them."""
        if clipping not in ("bookkeeping", "opacus"):
            raise ValueError(f"clipping must be bookkeeping or opacus, not {clipping!r}")
        from trustfm.train.dp_noise import SecretRandomness

        self.clipping = clipping
        self.micro_batch_size = micro_batch_size
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.n_train = n_train
        self.extra_rows = extra_rows
        self.accountant_name = accountant
        self.planned_epochs = planned_epochs
        self.adds_noise = True  # False on data-parallel ranks other than 0: the noise is added once
        self.randomness = SecretRandomness(seed=secret_seed)
        self.noise_multiplier: float | None = None
        self.sample_rate: float | None = None
        self._grad_sample = None
        self._dp_optimizer = None
        self._clipper = None
        self._clipped = None
        self._noise: torch.Tensor | None = None  # one flat buffer; each step's gradients are views of it
        self._accountant = None
        self._history: list = []

    def _make_accountant(self):
        from trustfm._deps import optional_import

        accountants = optional_import("opacus.accountants", "privacy")
        accountant = {"rdp": accountants.RDPAccountant, "prv": accountants.PRVAccountant}[self.accountant_name]()
        accountant.history = [tuple(h) for h in self._history]
        return accountant

    def on_fit_start(self, trainer) -> None:
        from trustfm._deps import optional_import

        opacus = optional_import("opacus", "privacy")
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        cfg = trainer.config
        steps_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        self.sample_rate = 1.0 / steps_per_epoch
        with warnings.catch_warnings():
            # the search tries noise levels far below the answer, where the RDP optimum sits at the largest order;
            # Opacus warns for each, though the bound at the noise level chosen is unaffected
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=self.epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
                epochs=self.planned_epochs or cfg.epochs, accountant=self.accountant_name,
            )
        self.expected_batch_size = self.n_train * self.sample_rate
        self._accountant = self._make_accountant()
        # hooks only: trainer.model stays the plain classifier, so saving and inference are unchanged
        if self.clipping == "bookkeeping":
            from trustfm.train.dp_clipping import BookkeepingClipper

            self._clipper = BookkeepingClipper(trainer.model, max_grad_norm=self.max_grad_norm).attach()
            # clipping is per example, so splitting a Poisson batch changes nothing but the padding
            trainer.micro_batch_size = self.micro_batch_size
            return
        self._grad_sample = opacus.GradSampleModule(trainer.model, loss_reduction="mean")
        trainer.optimizer = self._dp_optimizer = DPOptimizer(
            trainer.optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
            expected_batch_size=max(1, round(self.expected_batch_size)), loss_reduction="mean",
        )

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.randomness.start_epoch(epoch)
        if self._dp_optimizer is not None:
            self._dp_optimizer.generator = self.randomness.generator()

    def on_after_backward(self, trainer, batch: dict) -> None:
        if self._clipper is None:
            return
        # the loop's loss is the step's mean: its gradients are per-example gradients / rows (Opacus's "mean" rule)
        clipped = self._clipper.clipped_sum(scale=float(batch.get("step_rows", len(batch["labels"]))),
                                            weight=1.0 / self.expected_batch_size)
        if self._clipped is None:
            self._clipped = clipped
        else:  # another micro-batch of the same step
            for p, value in clipped.items():
                self._clipped[p] = self._clipped[p] + value if p in self._clipped else value

    def on_before_optimizer_step(self, trainer) -> None:
        if self._clipper is None:
            return
        # (sum of clipped gradients + N(0, (noise_multiplier C)^2)) / expected batch size, written in place into
        # one buffer: the clipped sums already carry the 1 / expected batch size
        params = self._clipper.parameters()
        if self._noise is None:
            self._noise = torch.empty(sum(p.numel() for p in params), dtype=torch.float32)
        if self.adds_noise:
            self.randomness.gaussian_(self._noise, self.noise_multiplier * self.max_grad_norm / self.expected_batch_size)
        else:
            self._noise.zero_()
        clipped, offset = self._clipped or {}, 0
        for p in params:
            # every trainable parameter gets noise, also one that no example reached
            grad = self._noise[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            if p in clipped:
                grad.add_(clipped[p])
            p.grad = grad if grad.dtype == p.dtype else grad.to(p.dtype)
        self._clipped = None

    def on_epoch_batches(self, trainer, epoch: int, batches: list[np.ndarray]) -> list[np.ndarray]:
        # Poisson sampling: every row joins every step's batch with probability q, independently
        picked = self.randomness.poisson_batches(self.n_train + self.extra_rows, self.sample_rate,
                                                 round(1.0 / self.sample_rate))
        return [b for b in picked if len(b)]  # an empty batch is data-independent; skipping it leaks nothing

    def on_step_end(self, trainer, record: dict) -> None:
        self._accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def parameters(self) -> list:
        """The parameters it writes gradients for each step (bookkeeping clipping), in a fixed order."""
        return self._clipper.parameters() if self._clipper is not None else []

    def epsilon_spent(self) -> float:
        return float(self._accountant.get_epsilon(delta=self.delta)) if self._accountant.history else 0.0

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.randomness.end_epoch(record["epoch"])
        record["privacy"] = {"epsilon": self.epsilon_spent(), "delta": self.delta,
                             "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                             "max_grad_norm": self.max_grad_norm, "accountant": self.accountant_name}

    def on_fit_end(self, trainer) -> None:
        self.randomness.close()
        self._noise = None
        if self._clipper is not None:
            self._clipper.detach()
            self._clipper = None
        if self._grad_sample is not None:
            self._grad_sample._close()
            self._grad_sample = None

    def state_dict(self) -> dict:
        history = self._accountant.history if self._accountant is not None else self._history
        return {"history": [list(h) for h in history], "randomness": self.randomness.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._history = [tuple(h) for h in state.get("history", [])]
        self.randomness.load_state_dict(state.get("randomness", {}))
        if self._accountant is not None:
            self._accountant.history = list(self._history)
