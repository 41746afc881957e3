"""Smaller torch students of a fine-tuned teacher: distillation to fewer layers, structured pruning, and the
one soft-label training both share.

Distillation (Sanh et al. 2019, DistilBERT): the student keeps one teacher layer out of
``layers / teacher layers`` (every other one for half the depth), the embeddings and the head,
then trains on ``alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE(student, gold)``.
Rows without a gold label (unlabelled texts) contribute only the soft term.

Pruning removes the same share of attention heads and feed-forward units from every layer,
ranked by first-order Taylor importance |w * dL/dw| summed over each head's or unit's weights
on the validation split (Molchanov et al. 2019), then recovers with a short run of the same
soft-label training. Unstructured sparsity is not offered: it brings no speed on CPU.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trustfm.errors import ConfigError


@dataclass(frozen=True)
class SoftLabels:
    """Training rows for a student: texts, gold label ids (-1: none) and the teacher's logits (n, k)."""

    texts: list[str]
    gold: np.ndarray  # int64 (n,), -1 where the row has no gold label
    teacher_logits: np.ndarray  # float32 (n, k)

    def targets(self) -> np.ndarray:
        """(n, 1 + k) float32: the gold id (or -1) then the teacher's logits, as the loss reads them per batch."""
        return np.concatenate([self.gold[:, None].astype(np.float32), self.teacher_logits.astype(np.float32)], axis=1)


def distillation_loss(*, temperature: float, alpha: float):
    """Loss over logits (b, k) and ``batch["labels"]`` packed by :meth:`SoftLabels.targets`."""

    def loss(logits: torch.Tensor, batch: dict) -> torch.Tensor:
        targets = batch["labels"]
        gold, teacher = targets[:, 0].long(), targets[:, 1:]
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.log_softmax(teacher / temperature, dim=-1),
                        log_target=True, reduction="batchmean") * temperature ** 2
        labelled = gold >= 0
        if alpha >= 1.0 or not bool(labelled.any()):
            return soft
        hard = F.cross_entropy(logits[labelled], gold[labelled])
        return alpha * soft + (1.0 - alpha) * hard

    return loss


def train_student(student, tokenizer, rows: SoftLabels, validation: tuple[list[str], np.ndarray], *, train_config,
                  max_length: int, seed: int, temperature: float, alpha: float, checkpoint_dir: Path,
                  show_progress: bool = False):
    """Train ``student`` in place on ``rows`` with :func:`distillation_loss`; keeps the epoch with the best
    validation macro-F1 (``validation``: texts and gold ids). Returns the trainer's final state."""
    from trustfm.data.batching import encode_texts
    from trustfm.metrics import quick_metrics
    from trustfm.train.loop import FineTuner

    best: dict = {}
    trainer = FineTuner(train_config, seed=seed, show_progress=show_progress,
                        loss=distillation_loss(temperature=temperature, alpha=alpha))
    state = trainer.fit(
        student, encode_texts(tokenizer, rows.texts, max_length), rows.targets(),
        encode_texts(tokenizer, validation[0], max_length), validation[1], pad_id=tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir, validation_metrics=quick_metrics,
        save_best=lambda model: best.update(state={k: v.detach().clone() for k, v in model.state_dict().items()}),
    )
    if best:
        student.load_state_dict(best["state"])
    student.eval()
    return state


def teacher_layers(num_layers: int, keep: int) -> list[int]:
    """Which of ``num_layers`` teacher layers a ``keep``-layer student starts from: evenly spaced from the first
    (6 -> 3: 0, 2, 4, as DistilBERT takes one layer out of two)."""
    if not 1 <= keep < num_layers:
        raise ConfigError(f"a distilled student needs 1 to {num_layers - 1} layers (the teacher has {num_layers}), "
                          f"not {keep}")
    return [int(math.floor(i * num_layers / keep)) for i in range(keep)]


def init_student(teacher, keep_layers: int | None = None):
    """A copy of ``teacher`` (a TextClassifier) with only :func:`teacher_layers` of its encoder layers (default:
    half of them); a family whose layers trustfm cannot address is refused in one line
    (:mod:`trustfm.models.families`)."""
    from trustfm.models.families import family_of

    adapter = family_of(teacher.encoder, purpose="distillation")
    student = copy.deepcopy(teacher)
    depth = len(adapter.layers(student.encoder))
    chosen = teacher_layers(depth, keep_layers or max(1, depth // 2))
    adapter.keep_layers(student.encoder, chosen)
    return student, chosen


def _slice_scores(slices, reduce_axis_sizes=None) -> torch.Tensor:
    """Sum over a group's weight slices of |w * dL/dw| (its bias too): one group's first-order Taylor importance."""
    from trustfm.models.families import _out_in_dims

    total = torch.zeros(())
    for module, axis, index in slices:
        out_dim, in_dim = _out_in_dims(module)
        saliency = (module.weight * module.weight.grad).abs()
        picked = saliency.index_select(out_dim if axis == "out" else in_dim, torch.as_tensor(index))
        total = total + picked.sum()
        if axis == "out" and module.bias is not None and module.bias.grad is not None:
            total = total + (module.bias * module.bias.grad).abs()[torch.as_tensor(index)].sum()
    return total


def taylor_importance(model, tokenizer, texts: Sequence[str], labels: np.ndarray, *, max_length: int,
                      batch_size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer, the importance of each attention group (a head; with grouped-query attention a key-value head
    and its queries) and each feed-forward unit: the sum over its weights of |w * dL/dw| for the cross-entropy on
    ``texts`` (first-order Taylor)."""
    from trustfm.data.batching import encode_texts, inference_batches, iterate_batches
    from trustfm.models.families import family_of

    adapter = family_of(model.encoder, purpose="pruning")
    model.train(False)
    model.zero_grad(set_to_none=True)
    encoded = encode_texts(tokenizer, list(texts), max_length)
    batches = inference_batches(encoded.lengths, batch_size=batch_size)
    for _, batch in iterate_batches(encoded, batches, tokenizer.pad_token_id, labels.astype(np.int64)):
        loss = F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["labels"], reduction="sum")
        loss.backward()
    heads, units = [], []
    with torch.no_grad():
        for layer in adapter.layers(model.encoder):
            heads.append(np.array([float(_slice_scores(g)) for g in adapter.head_groups(model.encoder, layer)]))
            units.append(np.array([float(_slice_scores(u)) for u in adapter.ffn_units(layer)]))
    model.zero_grad(set_to_none=True)
    return heads, units


def prune_model(model, tokenizer, texts: Sequence[str], labels: np.ndarray, *, fraction: float, max_length: int) -> dict:
    """Remove ``fraction`` (0 < f < 1) of every layer's heads and feed-forward units, least important first
    (:func:`taylor_importance` on ``texts``), in place. Returns the structure (:mod:`trustfm.models.structure`)."""
    from trustfm.models.structure import shrink_encoder

    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--fraction must be between 0 and 1 (exclusive), not {fraction}")
    head_scores, unit_scores = taylor_importance(model, tokenizer, texts, labels, max_length=max_length)
    kept_heads = [np.sort(np.argsort(-s)[:max(1, round(len(s) * (1 - fraction)))]) for s in head_scores]
    kept_units = [np.sort(np.argsort(-s)[:max(1, round(len(s) * (1 - fraction)))]) for s in unit_scores]
    return shrink_encoder(model.encoder, [k.tolist() for k in kept_heads], [k.tolist() for k in kept_units])
