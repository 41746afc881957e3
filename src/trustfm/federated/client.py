"""One federated client: its rows, and a round of local training with the project's own loop.

A client fits with :class:`~trustfm.train.loop.FineTuner` and the same callbacks ``trustfm train`` would use for
the config (fairness re-weighting, robust training, DP-SGD), plus FedProx's proximal term when the server asks
for it. Its reply is its new weights; a poisoned client (``federated.poison``) flips its labels or scales its
update, and ``client_dp.mode: local`` clips and noises the update before it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trustfm.config import RunConfig
from trustfm.errors import DataError
from trustfm.train.callbacks import Callback


@dataclass
class ClientShard:
    """A client's rows: ``train`` to fit on and ``holdout`` for its own evaluation (LabelledTexts)."""

    client_id: int
    train: object
    holdout: object
    label_names: list[str]
    poisoned: bool = False
    source: str = "partition"  # "partition" of the shared training file, or the client's own data file


def client_shards(config: RunConfig, data) -> list[ClientShard]:
    """Every client's rows when all clients partition the run's training split (simulation, and SuperNodes
    started without a ``data-file``); ``data`` is the run's PreparedData."""
    from trustfm.federated.partition import partition_rows, split_holdout

    fed = config.federated
    column = data.train.groups.get(fed.partition.column) if fed.partition.column else None
    parts = partition_rows(data.label_ids(data.train), clients=fed.clients, method=fed.partition.method,
                           alpha=fed.partition.alpha, column=column, seed=config.seed)
    poisoned = fed.poison.clients if fed.poison is not None else 0
    shards = []
    for client_id, rows in enumerate(parts):
        train_rows, holdout_rows = split_holdout(rows, fed.local_holdout, seed=config.seed + 1000 + client_id)
        shards.append(ClientShard(client_id, data.train.subset(train_rows), data.train.subset(holdout_rows),
                                  data.label_names, poisoned=client_id < poisoned))
    return shards


def own_file_shard(config: RunConfig, *, client_id: int, data_file: str, label_names: list[str]) -> ClientShard:
    """A client that brings its own data file (a SuperNode's ``data-file`` node config): read with the run's
    column mapping; its labels must be among the federation's classes."""
    from trustfm.data.prepare import load_labelled
    from trustfm.federated.partition import split_holdout

    texts = load_labelled(Path(data_file), config.data)
    unknown = sorted(set(texts.labels) - set(label_names))
    if unknown:
        raise DataError(f"{data_file}: client {client_id}'s labels {unknown} are not among the federation's "
                        f"classes {label_names} (column {config.data.label_column})")
    fed = config.federated
    train_rows, holdout_rows = split_holdout(np.arange(len(texts)), fed.local_holdout, seed=config.seed + client_id)
    poisoned = fed.poison is not None and client_id < fed.poison.clients
    return ClientShard(client_id, texts.subset(train_rows), texts.subset(holdout_rows), list(label_names),
                       poisoned=poisoned, source=str(data_file))


class ProximalTerm(Callback):
    """FedProx (Li et al., MLSys 2020): the gradient of ``mu/2 |w - w_global|^2`` joins every step's gradient.

    It is added after clipping and after DP noise: it depends on the global weights only, not on the data.
    """

    def __init__(self, mu: float, global_state: dict[str, torch.Tensor]):
        self.mu = mu
        self.global_state = global_state
        self._pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def on_fit_start(self, trainer) -> None:
        self._pairs = [(p, self.global_state[name]) for name, p in trainer.model.named_parameters()
                       if p.requires_grad and name in self.global_state]

    def on_before_optimizer_step(self, trainer) -> None:
        for param, anchor in self._pairs:
            if param.grad is not None:
                param.grad.add_(param.detach() - anchor, alpha=self.mu)


def float_state(model) -> dict[str, torch.Tensor]:
    """The model's floating-point weights (what travels between server and clients), detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


@dataclass
class FitOutcome:
    state: dict[str, torch.Tensor]  # the weights sent back: global + (processed) update
    examples: int
    metrics: dict[str, float]
    dp_state: dict | None = None  # DP-SGD accountant history, kept by the client between rounds


class ClientTrainer:
    """Local training and evaluation of one client's shard; the model is built once and reloaded each round."""

    def __init__(self, config: RunConfig, shard: ClientShard, *, model_and_tokenizer=None):
        from trustfm.data.batching import encode_texts
        from trustfm.models import build_classifier

        self.config = config
        self.shard = shard
        self.model, self.tokenizer = model_and_tokenizer or build_classifier(config.model, shard.label_names)
        max_length = config.data.max_length
        self.train_enc = encode_texts(self.tokenizer, shard.train.texts, max_length)
        self.holdout_enc = encode_texts(self.tokenizer, shard.holdout.texts, max_length)
        index = {name: i for i, name in enumerate(shard.label_names)}
        self.train_labels = np.fromiter((index[x] for x in shard.train.labels), np.int64, len(shard.train))
        self.holdout_labels = np.fromiter((index[x] for x in shard.holdout.labels), np.int64, len(shard.holdout))
        if shard.poisoned:
            # every training label moved to the next class: the update pulls the model the wrong way (scaled_update
            # then boosts it)
            self.train_labels = (self.train_labels + 1) % len(shard.label_names)

    def _callbacks(self, global_state, *, proximal_mu: float, dp_state: dict | None) -> tuple[list, object]:
        from trustfm.train.fairness import mitigation_callbacks
        from trustfm.train.robust import robustness_callbacks

        config, fed = self.config, self.config.federated
        callbacks: list[Callback] = []
        dpsgd = None
        if config.privacy.dp is not None:
            from trustfm.train.privacy import DPSGD, default_delta, set_dp_trainable

            dp = config.privacy.dp
            n = len(self.train_labels)
            set_dp_trainable(self.model, dp)  # as trustfm train does
            dpsgd = DPSGD(epsilon=dp.epsilon, delta=dp.delta if dp.delta is not None else default_delta(n),
                          max_grad_norm=dp.max_grad_norm, n_train=n, accountant=dp.accountant, clipping=dp.clipping,
                          planned_epochs=fed.rounds * fed.local_epochs)
            if dp_state:
                dpsgd.load_state_dict(dp_state)
            callbacks.append(dpsgd)
        if config.fairness.mitigation in ("reweigh", "balanced_sampling"):
            callbacks += mitigation_callbacks(config.fairness, self.shard.train.groups, self.train_labels,
                                              seed=config.seed)
        callbacks += robustness_callbacks(config.robustness, seed=config.seed)
        if proximal_mu > 0:
            callbacks.append(ProximalTerm(proximal_mu, global_state))
        return callbacks, dpsgd

    def load(self, global_state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in float_state(self.model) if k not in global_state]
        if missing:
            raise DataError(f"the server's weights lack {len(missing)} of the model's tensors (first: {missing[0]}); "
                            "server and client must use the same model.name_or_path")
        self.model.load_state_dict(global_state, strict=False)

    def fit(self, global_state: dict[str, torch.Tensor], *, server_round: int, proximal_mu: float = 0.0,
            dp_state: dict | None = None, show_progress: bool = False) -> FitOutcome:
        """Train ``local_epochs`` on the shard from ``global_state``; returns the weights to send back."""
        from trustfm.federated.privacy import privatise_local_update, update_norm
        from trustfm.metrics import quick_metrics
        from trustfm.train.loop import FineTuner

        config, fed = self.config, self.config.federated
        self.load(global_state)
        for p in self.model.parameters():
            p.requires_grad_(True)
        callbacks, dpsgd = self._callbacks(global_state, proximal_mu=proximal_mu, dp_state=dp_state)
        train_cfg = config.train.model_copy(update={"epochs": fed.local_epochs, "early_stopping": None})
        # each client and round draws its own batch order
        trainer = FineTuner(train_cfg, seed=config.seed + 7919 * server_round + self.shard.client_id,
                            callbacks=callbacks, show_progress=show_progress,
                            schedule_window=((server_round - 1) / fed.rounds, server_round / fed.rounds))
        state = trainer.fit(self.model, self.train_enc, self.train_labels, self.holdout_enc, self.holdout_labels,
                            pad_id=self.tokenizer.pad_token_id, checkpoint_dir=None,
                            validation_metrics=quick_metrics, save_best=lambda m: None)
        local = float_state(self.model)
        update = {k: local[k] - global_state[k] for k in local}
        metrics = {"train-loss": float(state.history[-1]["train_loss"])}
        if self.shard.poisoned and fed.poison.attack == "scaled_update":
            # model replacement (Bagdasaryan et al. 2020): a boosted update that dominates a mean
            update = {k: v * fed.poison.scale for k, v in update.items()}
        if fed.client_dp is not None and fed.client_dp.mode == "local":
            update = privatise_local_update(update, noise_multiplier=fed.client_dp.noise_multiplier,
                                            clipping_norm=fed.client_dp.clipping_norm)
        # the norm of what is sent (after any scaling or local noise): what the server, and its operator, see
        metrics["update-norm"] = update_norm(update)
        if dpsgd is not None:
            metrics["example-epsilon"] = dpsgd.epsilon_spent()
        return FitOutcome(state={k: global_state[k] + update[k] for k in update}, examples=len(self.train_labels),
                          metrics=metrics, dp_state=dpsgd.state_dict() if dpsgd is not None else None)

    def evaluate(self, global_state: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accuracy, macro-F1 and loss (nats) of the global weights on the client's holdout rows."""
        from trustfm.metrics import quick_metrics
        from trustfm.models.inference import predict_proba

        self.load(global_state)
        proba = predict_proba(self.model, self.holdout_enc, pad_id=self.tokenizer.pad_token_id,
                              batch_size=self.config.train.eval_batch_size)
        return {**quick_metrics(self.holdout_labels, proba), "examples": len(self.holdout_labels)}
