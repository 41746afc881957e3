"""Shrunken encoders: attention heads and feed-forward units removed per layer, for every family that
:mod:`trustfm.models.families` can address.

Transformers 5 no longer prunes heads itself, and a Hugging Face config holds one
head count and one feed-forward width for every layer. A pruned encoder is
therefore described by a *structure*, stored in ``trustfm_model.json``::

    {"heads": [[0, 2, 3, ...], ...],      # kept attention groups of each layer (original numbering): heads, or
                                          # with grouped-query attention key-value heads with their query heads
     "ffn_units": [1075, 1075, ...]}      # kept feed-forward units per layer

:func:`shrink_encoder` cuts the layers to it; loading builds the encoder from its
config, shrinks it, then loads the saved (smaller) weights.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from trustfm.models.families import family_of, shrink_layer


def shrink_encoder(encoder: nn.Module, heads: Sequence[Sequence[int]], ffn_units: Sequence[Sequence[int]]) -> dict:
    """Keep, in layer ``i``, the attention groups ``heads[i]`` and the feed-forward units ``ffn_units[i]`` (ids in
    the layer's original numbering); the other rows and columns are removed in place. Returns the structure to
    record (kept group ids, kept unit counts)."""
    adapter = family_of(encoder, purpose="pruning")
    layers = adapter.layers(encoder)
    if len(heads) != len(layers) or len(ffn_units) != len(layers):
        raise ValueError(f"a structure for {len(heads)} layer(s), but the encoder has {len(layers)}")
    for layer, kept_heads, kept_units in zip(layers, heads, ffn_units):
        shrink_layer(adapter, encoder, layer, [int(h) for h in kept_heads], [int(u) for u in kept_units])
    return {"heads": [sorted(int(h) for h in kept) for kept in heads], "ffn_units": [len(u) for u in ffn_units]}


def apply_structure(encoder: nn.Module, structure: dict) -> None:
    """Give a freshly built encoder the shapes of a saved pruned one (its weights are loaded afterwards)."""
    shrink_encoder(encoder, structure["heads"], [range(n) for n in structure["ffn_units"]])
