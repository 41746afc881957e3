"""Tokenise once, then serve length-bucketed, dynamically padded batches.

Sorting texts of similar length into the same batch means each batch is padded
only to its own longest text, which on short-text data (reviews, tweets) removes
most of the padding a random batch carries. The batch order is still shuffled,
and everything depends only on ``(seed, epoch)`` so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch


@dataclass
class EncodedTexts:
    """Token ids per text (no padding). ``truncated`` counts texts cut to ``max_length``."""

    input_ids: list[np.ndarray]
    max_length: int
    truncated: np.ndarray  # bool, shape (n,)
    # tokens per text before truncation, special tokens included, shape (n,); None where not measured
    full_lengths: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text as kept (after truncation), shape (n,)."""
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    def make_batch(self, index, pad_id: int) -> dict[str, "torch.Tensor"]:
        """Rows ``index`` padded to their longest: ``input_ids`` and ``attention_mask``, shape (b, t)."""
        return pad_batch([self.input_ids[i] for i in index], pad_id)


def encode_texts(tokenizer, texts: Sequence[str], max_length: int, chunk: int = 4096) -> EncodedTexts:
    """Tokenise ``texts`` with special tokens, truncating to ``max_length`` tokens.

    Truncation is detected in the same pass through the fast tokenizer's overflow
    mapping, so it costs no second tokenisation; the overflow pieces also give each
    text's length before truncation (``full_lengths``: the pieces' contents add up,
    the stride being 0).
    """
    ids: list[np.ndarray] = []
    truncated = np.zeros(len(texts), dtype=bool)
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    full = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), chunk):
        part = list(texts[start : start + chunk])
        enc = tokenizer(
            part,
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        mapping = enc.get("overflow_to_sample_mapping")
        if mapping is None:  # slow tokenizers: no overflow mapping; one row per text
            ids.extend(np.asarray(x, dtype=np.int64) for x in enc["input_ids"])
            full[start:start + len(part)] = [len(x) for x in enc["input_ids"]]
            continue
        previous = -1
        for row, sample in enumerate(mapping):
            full[start + sample] += len(enc["input_ids"][row]) - specials
            if sample == previous:
                truncated[start + sample] = True
                continue
            ids.append(np.asarray(enc["input_ids"][row], dtype=np.int64))
            previous = sample
        full[start:start + len(part)] += specials
    return EncodedTexts(input_ids=ids, max_length=max_length, truncated=truncated, full_lengths=full)


def bucketed_batches(
    lengths: np.ndarray,
    *,
    batch_size: int,
    bucket_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[np.ndarray]:
    """Index batches for one epoch.

    With ``shuffle``: permute all rows with ``(seed, epoch)``, cut into buckets of
    ``bucket_size * batch_size`` rows, sort each bucket by length, cut into
    batches and shuffle the batch order. Without: sort all rows by length (for
    evaluation, where order does not matter and padding does).
    """
    n = len(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    span = max(1, bucket_size) * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, n, span):
        bucket = order[start : start + span]
        if bucket_size > 1:
            bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def inference_batches(lengths: np.ndarray, *, batch_size: int) -> list[np.ndarray]:
    """Index batches for inference: every row sorted by length, cut every ``batch_size`` rows."""
    return bucketed_batches(lengths, batch_size=batch_size, bucket_size=1, seed=0, epoch=0, shuffle=False)


def exact_length_batches(lengths: np.ndarray, *, batch_size: int) -> list[np.ndarray]:
    """Index batches in which every row has the same length (no padding at all), at most ``batch_size`` rows each,
    in order of length. For a quantised model: a padded pass computes a text's float activations in another order
    than the text alone does, and the next quantisation step can round that last-bit difference into a visible
    one; without padding the text's answer is the one it gets alone."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    return [chunk for group in np.split(order, cuts) for chunk in np.array_split(group, -(-len(group) // batch_size))
            if len(chunk)]


def pad_arrays(input_ids: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a list of id arrays to the longest: (input ids, attention mask), int64 arrays of shape (b, t)."""
    width = max(len(x) for x in input_ids)
    ids = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, seq in enumerate(input_ids):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def pad_batch(input_ids: Sequence[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """:func:`pad_arrays` as torch tensors: ``input_ids`` and ``attention_mask``, shape (b, t)."""
    ids, mask = pad_arrays(input_ids, pad_id)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def iterate_batches(
    encoded,
    batches: list[np.ndarray],
    pad_id: int,
    labels: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Yield ``(row_index, batch)``; the batch has ``labels`` when labels are given.

    ``encoded``: :class:`EncodedTexts`, or any encoding with ``make_batch(index, pad_id)`` (images).

    ``batch["index"]`` holds the rows' positions in ``encoded`` (shape (b,)), so
    callbacks can look up per-row data such as groups or weights.
    """
    for index in batches:
        batch = encoded.make_batch(index, pad_id)
        batch["index"] = torch.from_numpy(np.asarray(index, dtype=np.int64))
        if labels is not None:
            batch["labels"] = torch.from_numpy(labels[index])
        yield index, batch


def padding_aware_batches(lengths: np.ndarray, *, max_batch: int, pass_cost_tokens: float) -> list[np.ndarray]:
    """Index batches for inference that minimise padded tokens plus a fixed cost per forward pass.

    Rows are sorted by length and cut where it pays: a batch of ``b`` rows whose longest has ``t`` tokens
    costs ``b * t + pass_cost_tokens`` (the padded tokens the model computes, and each call's own overhead
    in the same unit), and the cut points minimise the total (dynamic programming over the sorted lengths,
    ``O(n * max_batch)``). Few rows of mixed length (a serving micro-batch) split into a few length-homogeneous
    passes instead of one padded to the longest; many rows of every length end up near ``max_batch`` each.
    ``pass_cost_tokens`` 0: one pass per distinct length; a large value: passes of ``max_batch`` rows.
    """
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.asarray(lengths, dtype=np.float64)[order]
    n = len(order)
    best = np.zeros(n + 1)  # best[j]: the least cost of the first j sorted rows
    cut = np.zeros(n + 1, dtype=np.int64)  # cut[j]: where the last batch of that best split starts
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_batch), end)
        costs = best[starts] + (end - starts) * sorted_lengths[end - 1] + pass_cost_tokens
        pick = int(np.argmin(costs))
        best[end], cut[end] = costs[pick], starts[pick]
    batches, end = [], n
    while end > 0:
        batches.append(order[cut[end]:end])
        end = int(cut[end])
    return batches[::-1]
