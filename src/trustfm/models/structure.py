"""Shrunken BERT-layout encoders: attention heads and feed-forward units removed per layer.

Transformers 5 no longer prunes heads itself, and a Hugging Face config holds one
head count and one feed-forward width for every layer. A pruned encoder is
therefore described by a *structure*, stored in ``trustfm_model.json``::

    {"heads": [[0, 2, 3, ...], ...],      # kept head ids of each layer (original numbering)
     "ffn_units": [1075, 1075, ...]}      # kept feed-forward units per layer

:func:`shrink_encoder` cuts the linear layers to it; loading builds the encoder
from its config, shrinks it, then loads the saved (smaller) weights.

Only BERT-layout encoders (BERT, RoBERTa, MiniLM, ELECTRA: ``layer.attention.self.query``
...) are supported; :func:`bert_layers` refuses others.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def bert_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's transformer layers, each with ``attention.self.{query,key,value}``, ``attention.output.dense``,
    ``intermediate.dense`` and ``output.dense``; ValueError for other layouts."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(layer, "attention") and hasattr(layer, "intermediate") for layer in layers):
        raise ValueError(f"{type(encoder).__name__} is not a BERT-layout encoder (layer.attention, layer.intermediate)")
    return list(layers)


def head_size(encoder: nn.Module) -> int:
    """Width of one attention head (hidden size / original head count); pruning keeps it."""
    config = encoder.config
    return config.hidden_size // config.num_attention_heads


def _cut_linear(linear: nn.Linear, keep: torch.Tensor, *, dim: int) -> nn.Linear:
    """A copy of ``linear`` keeping rows (``dim=0``: output units) or columns (``dim=1``: inputs) ``keep``."""
    weight = linear.weight.detach().index_select(dim, keep).clone()
    bias = linear.bias
    if bias is not None:
        bias = bias.detach().clone() if dim == 1 else bias.detach().index_select(0, keep).clone()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def shrink_encoder(encoder: nn.Module, heads: Sequence[Sequence[int]], ffn_units: Sequence[Sequence[int]]) -> dict:
    """Keep, in layer ``i``, the heads ``heads[i]`` (ids in 0..heads-1) and the feed-forward units ``ffn_units[i]``
    (ids in 0..intermediate_size-1); the other rows and columns are removed in place. Returns the structure to
    record (kept head ids, kept unit counts)."""
    layers = bert_layers(encoder)
    if len(heads) != len(layers) or len(ffn_units) != len(layers):
        raise ValueError(f"a structure for {len(heads)} layer(s), but the encoder has {len(layers)}")
    size = head_size(encoder)
    for layer, kept_heads, kept_units in zip(layers, heads, ffn_units):
        if not kept_heads or not len(kept_units):
            raise ValueError("every layer must keep at least one head and one feed-forward unit")
        attention = layer.attention
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in sorted(kept_heads)])
        for name in ("query", "key", "value"):
            setattr(attention.self, name, _cut_linear(getattr(attention.self, name), rows, dim=0))
        attention.output.dense = _cut_linear(attention.output.dense, rows, dim=1)
        attention.self.num_attention_heads = len(kept_heads)
        attention.self.all_head_size = len(kept_heads) * size
        units = torch.as_tensor(sorted(int(u) for u in kept_units), dtype=torch.long)
        layer.intermediate.dense = _cut_linear(layer.intermediate.dense, units, dim=0)
        layer.output.dense = _cut_linear(layer.output.dense, units, dim=1)
    return {"heads": [sorted(int(h) for h in kept) for kept in heads], "ffn_units": [len(u) for u in ffn_units]}


def apply_structure(encoder: nn.Module, structure: dict) -> None:
    """Give a freshly built encoder the shapes of a saved pruned one (its weights are loaded afterwards)."""
    shrink_encoder(encoder, structure["heads"], [range(n) for n in structure["ffn_units"]])
