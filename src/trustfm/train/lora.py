"""LoRA adapters (peft) on a TextClassifier's encoder, and folding them back in for saving.

``add_lora`` injects rank-``r`` adapters into the attention projections in
place (the model stays a ``TextClassifier``; no ``PeftModel`` wrapper), freezes
everything else but the head, and returns the number of trainable parameters.
``merged_copy`` returns a plain classifier with ``W + (alpha / r) B A`` folded
into each adapted weight, so a saved LoRA model loads, serves and is audited
exactly like any other.
"""

from __future__ import annotations

import copy

from torch import nn

def add_lora(model: nn.Module, *, rank: int = 8, alpha: float = 16.0, targets=None) -> int:
    """Inject LoRA adapters (no dropout) into ``model.encoder``'s ``targets`` layers (default: its family's query
    and value projections, :mod:`trustfm.models.families`); returns trainable parameters."""
    from trustfm._deps import optional_import
    from trustfm.models.families import family_of

    peft = optional_import("peft", "privacy")
    if targets is None:
        targets = family_of(model.encoder, purpose="LoRA").lora_targets
    for p in model.parameters():
        p.requires_grad_(False)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets), bias="none")
    peft.inject_adapter_in_model(config, model.encoder)
    adapted = [m for m in model.encoder.modules() if _is_lora(m)]
    if not adapted:
        raise ValueError(f"LoRA found no layers named {list(targets)} in the encoder")
    for p in model.head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_lora(model: nn.Module) -> bool:
    return any(_is_lora(m) for m in model.modules())


def merged_copy(model: nn.Module) -> nn.Module:
    """``model`` itself when it has no adapters; else a copy with every adapter folded into its base weight."""
    if not has_lora(model):
        return model
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if _is_lora(module):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, child, module.get_base_layer())
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def _is_lora(module: nn.Module) -> bool:
    # duck-typed so that checking a plain model needs no peft
    return hasattr(module, "lora_A") and hasattr(module, "merge") and hasattr(module, "get_base_layer")
