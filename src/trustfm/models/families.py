"""Where each architecture family keeps its layers, attention heads and feed-forward units: one small adapter per
family, so that distillation, pruning, DP layer choices and LoRA address every family the same way.

An adapter answers, for an encoder that Transformers' ``AutoModel`` built:

- :meth:`FamilyAdapter.layers`: its transformer layers, in order, and :meth:`FamilyAdapter.keep_layers` to keep a
  subset of them (a distilled student), with the config and each layer's index made consistent;
- :meth:`FamilyAdapter.head_groups` / :meth:`FamilyAdapter.ffn_units`: per layer, the weight slices that make up
  each prunable attention group (a head; with grouped-query attention, a key-value head with its query heads) and
  each feed-forward unit (with a gated MLP: its gate and its up projection), as ``(module, axis, indices)``
  slices; :func:`shrink_layer` cuts a layer to the kept groups and units through them;
- :attr:`FamilyAdapter.lora_targets`: the attention projections LoRA adapts;
- :attr:`FamilyAdapter.decoder`: a causal decoder, pooled at its last real token.

Families: BERT-layout encoders (BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT, MiniLM), DeBERTa-v2/v3, DistilBERT,
ModernBERT, Llama-layout decoders (Llama, Qwen2, Mistral, with grouped-query attention) and GPT-2.
:func:`family_of` names the family of an encoder, or refuses in one line naming its model type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from trustfm.errors import ConfigError

# (module, axis, indices): the module's output units ("out") or input features ("in") at ``indices``
Slice = tuple[nn.Module, str, list[int]]


def _get(root: nn.Module, path: str):
    for part in path.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def _out_in_dims(module: nn.Module) -> tuple[int, int]:
    """(output axis, input axis) of a weight: nn.Linear stores (out, in), GPT-2's Conv1D (in, out)."""
    return (1, 0) if type(module).__name__ == "Conv1D" else (0, 1)


@dataclass(frozen=True)
class FamilyAdapter:
    """One architecture family's layout (see the module docstring)."""

    name: str
    layers_path: str  # from the encoder to its nn.ModuleList of layers
    attention: Callable[[nn.Module, object], list[list[Slice]]]  # layer, config -> slices per head group
    ffn: Callable[[nn.Module, int], list[Slice]]  # layer, unit -> that unit's slices
    units: Callable[[nn.Module], int]  # layer -> feed-forward units
    after_heads: Callable[[nn.Module, int, object], None]  # layer, kept groups, config: update head counts
    lora_targets: tuple[str, ...]
    decoder: bool = False

    def layers(self, encoder: nn.Module) -> nn.ModuleList:
        return _get(encoder, self.layers_path)

    def keep_layers(self, encoder: nn.Module, kept: list[int]) -> None:
        """Keep only layers ``kept`` (indices, ascending) of ``encoder``, in place."""
        parent_path, _, name = self.layers_path.rpartition(".")
        parent = _get(encoder, parent_path) if parent_path else encoder
        old = self.layers(encoder)
        setattr(parent, name, nn.ModuleList([old[i] for i in kept]))
        config = encoder.config
        types = getattr(config, "layer_types", None)
        if types is not None and len(types) == len(old):
            config.layer_types = [types[i] for i in kept]
        config.num_hidden_layers = len(kept)
        for position, layer in enumerate(self.layers(encoder)):
            for module in layer.modules():  # attention and caches look their layer up by index
                if hasattr(module, "layer_idx"):
                    module.layer_idx = position

    def head_groups(self, encoder: nn.Module, layer: nn.Module) -> list[list[Slice]]:
        """Per prunable attention group of ``layer``: the weight slices that belong to it."""
        return self.attention(layer, encoder.config)

    def ffn_units(self, layer: nn.Module) -> list[list[Slice]]:
        """Per feed-forward unit of ``layer``: the weight slices that belong to it."""
        return [self.ffn(layer, u) for u in range(self.units(layer))]


# -- per-family layouts: the slices of head group g and of feed-forward unit u ----------------------------------------

def _heads(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    return heads, config.hidden_size // heads


def _separate_qkv(names: tuple[str, ...], out_name: str, base: str = ""):
    """Attention with one linear layer per projection (``names``) and an output projection ``out_name``."""

    def slices(layer, config):
        heads, size = _heads(config)
        module = _get(layer, base) if base else layer
        projections = [getattr(module, n) for n in names if getattr(module, n, None) is not None]
        out = _get(layer, out_name)
        return [[*((p, "out", list(range(h * size, (h + 1) * size))) for p in projections),
                 (out, "in", list(range(h * size, (h + 1) * size)))] for h in range(heads)]

    return slices


def _fused_qkv(qkv_name: str, out_name: str):
    """Attention with one fused projection: query, key and value rows one after the other (ModernBERT, GPT-2)."""

    def slices(layer, config):
        heads, size = _heads(config)
        qkv, out = _get(layer, qkv_name), _get(layer, out_name)
        width = qkv.weight.shape[_out_in_dims(qkv)[0]] // 3  # the current width (heads may be pruned already)
        live = width // size
        return [[(qkv, "out", [part * width + i for part in range(3) for i in range(h * size, (h + 1) * size)]),
                 (out, "in", list(range(h * size, (h + 1) * size)))] for h in range(live)]

    return slices


def _grouped_query(layer, config):
    """Llama-layout attention with grouped queries: a group is one key-value head and the query heads reading it."""
    attention = layer.self_attn
    size = getattr(attention, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = attention.k_proj.weight.shape[0] // size
    per_group = attention.q_proj.weight.shape[0] // size // kv_heads
    groups = []
    for g in range(kv_heads):
        queries = list(range(g * per_group * size, (g + 1) * per_group * size))
        keys = list(range(g * size, (g + 1) * size))
        groups.append([(attention.q_proj, "out", queries), (attention.k_proj, "out", keys),
                       (attention.v_proj, "out", keys), (attention.o_proj, "in", queries)])
    return groups


def _set_heads(path: str, *names: str, size_name: str | None = None):
    """After pruning: ``names`` on the attention module ``path`` become the kept head count (and ``size_name`` the
    kept width)."""

    def update(layer, kept: int, config):
        module = _get(layer, path)
        size = config.hidden_size // config.num_attention_heads
        for name in names:
            if hasattr(module, name):
                setattr(module, name, kept)
        if size_name and hasattr(module, size_name):
            setattr(module, size_name, kept * size)

    return update


def _no_update(layer, kept, config):
    return None  # the attention infers its head count from the weights' shapes


def _linear_ffn(up: str, down: str, gate: str | None = None):
    def units(layer, u):
        return [*(([(_get(layer, gate), "out", [u])]) if gate else []), (_get(layer, up), "out", [u]),
                (_get(layer, down), "in", [u])]

    return units


def _linear_units(up: str):
    def count(layer):
        module = _get(layer, up)
        return module.weight.shape[_out_in_dims(module)[0]]

    return count


def _glu_ffn(layer, u):
    """ModernBERT's gated MLP: ``Wi`` holds the input half then the gate half."""
    width = layer.mlp.Wi.weight.shape[0] // 2
    return [(layer.mlp.Wi, "out", [u, width + u]), (layer.mlp.Wo, "in", [u])]


FAMILIES: dict[str, FamilyAdapter] = {
    "bert": FamilyAdapter(
        "bert", "encoder.layer", _separate_qkv(("query", "key", "value"), "attention.output.dense", "attention.self"),
        _linear_ffn("intermediate.dense", "output.dense"), _linear_units("intermediate.dense"),
        _set_heads("attention.self", "num_attention_heads", size_name="all_head_size"), ("query", "value")),
    "deberta-v2": FamilyAdapter(
        "deberta-v2", "encoder.layer",
        _separate_qkv(("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj"),
                      "attention.output.dense", "attention.self"),
        _linear_ffn("intermediate.dense", "output.dense"), _linear_units("intermediate.dense"),
        _set_heads("attention.self", "num_attention_heads", size_name="all_head_size"), ("query_proj", "value_proj")),
    "distilbert": FamilyAdapter(
        "distilbert", "transformer.layer", _separate_qkv(("q_lin", "k_lin", "v_lin"), "attention.out_lin", "attention"),
        _linear_ffn("ffn.lin1", "ffn.lin2"), _linear_units("ffn.lin1"), _set_heads("attention", "n_heads"),
        ("q_lin", "v_lin")),
    "modernbert": FamilyAdapter(
        "modernbert", "layers", _fused_qkv("attn.Wqkv", "attn.Wo"), _glu_ffn,
        lambda layer: layer.mlp.Wi.weight.shape[0] // 2, _no_update, ("Wqkv",)),
    "llama": FamilyAdapter(
        "llama", "layers", _grouped_query, _linear_ffn("mlp.up_proj", "mlp.down_proj", gate="mlp.gate_proj"),
        _linear_units("mlp.up_proj"), _no_update, ("q_proj", "v_proj"), decoder=True),
    "gpt2": FamilyAdapter(
        "gpt2", "h", _fused_qkv("attn.c_attn", "attn.c_proj"), _linear_ffn("mlp.c_fc", "mlp.c_proj"),
        _linear_units("mlp.c_fc"), lambda layer, kept, config: _gpt2_heads(layer, kept, config), ("c_attn",),
        decoder=True),
}


def _gpt2_heads(layer, kept: int, config) -> None:
    attention = layer.attn
    size = config.hidden_size // config.num_attention_heads
    attention.num_heads, attention.split_size = kept, kept * size


# model types (config.model_type) of each family; an unknown type is matched by its layout (below)
MODEL_TYPES = {
    "bert": ("bert", "roberta", "xlm-roberta", "electra", "camembert", "mpnet", "ernie", "megatron-bert"),
    "deberta-v2": ("deberta-v2", "deberta"),
    "distilbert": ("distilbert",),
    "modernbert": ("modernbert",),
    "llama": ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "olmo", "phi3", "smollm3"),
    "gpt2": ("gpt2",),
}
_LAYOUT = (("modernbert", "layers.0.attn.Wqkv"), ("llama", "layers.0.self_attn.q_proj"), ("gpt2", "h.0.attn.c_attn"),
           ("distilbert", "transformer.layer.0.attention.q_lin"),
           ("deberta-v2", "encoder.layer.0.attention.self.query_proj"),
           ("bert", "encoder.layer.0.attention.self.query"))


def family_of(encoder: nn.Module, *, purpose: str = "this") -> FamilyAdapter:
    """The adapter of ``encoder``'s family; :class:`ConfigError` naming its model type when none fits."""
    model_type = getattr(encoder.config, "model_type", type(encoder).__name__)
    for family, types in MODEL_TYPES.items():
        if model_type in types:
            return FAMILIES[family]
    for family, probe in _LAYOUT:
        if _get(encoder, probe) is not None:
            return FAMILIES[family]
    known = ", ".join(sorted({t for types in MODEL_TYPES.values() for t in types}))
    raise ConfigError(f"{purpose} cannot address the layers of a '{model_type}' model: trustfm knows the layouts of "
                      f"{known}")


def is_decoder(encoder: nn.Module) -> bool:
    """Whether ``encoder`` is a causal decoder (pooled at its last real token by default)."""
    config = encoder.config
    if getattr(config, "is_decoder", False):
        return True
    try:
        return family_of(encoder).decoder
    except ConfigError:
        return False


# -- cutting weights ------------------------------------------------------------------------------------------------

def cut(module: nn.Module, keep: list[int], axis: str) -> nn.Module:
    """A copy of ``module`` (nn.Linear or GPT-2's Conv1D) keeping output units (``axis="out"``) or input features
    (``"in"``) ``keep``, in that order."""
    out_dim, in_dim = _out_in_dims(module)
    index = torch.as_tensor(keep, dtype=torch.long)
    weight = module.weight.detach().index_select(out_dim if axis == "out" else in_dim, index).clone()
    bias = module.bias
    if bias is not None:
        bias = bias.detach().index_select(0, index).clone() if axis == "out" else bias.detach().clone()
    if type(module).__name__ == "Conv1D":
        new = type(module)(weight.shape[1], weight.shape[0])
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def shrink_layer(adapter: FamilyAdapter, encoder: nn.Module, layer: nn.Module, heads: list[int],
                 units: list[int]) -> None:
    """Keep attention groups ``heads`` and feed-forward ``units`` (ids, any order) of ``layer``, in place."""
    if not heads or not units:
        raise ValueError("every layer must keep at least one head and one feed-forward unit")
    groups = adapter.head_groups(encoder, layer)
    unit_slices = adapter.ffn_units(layer)
    kept: dict[tuple[int, str], tuple[nn.Module, list[int]]] = {}
    for chosen in ([groups[h] for h in sorted(heads)], [unit_slices[u] for u in sorted(units)]):
        for slices in chosen:
            for module, axis, index in slices:
                kept.setdefault((id(module), axis), (module, []))[1].extend(index)
    for (_, axis), (module, index) in kept.items():
        # ascending: a fused projection keeps its parts in order (query, key, value; a gated MLP's two halves)
        _replace(layer, module, cut(module, sorted(index), axis))
    adapter.after_heads(layer, len(heads), encoder.config)


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for name, module in root.named_modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                return
    raise ValueError("module to replace not found in the layer")
