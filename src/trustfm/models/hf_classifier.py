"""A sequence classifier trained elsewhere (any ``AutoModelForSequenceClassification`` checkpoint, with its own head
and its own ``id2label``), wrapped so it acts like trustfm's :class:`~trustfm.models.classifier.TextClassifier`.

Nothing of the model changes: ``forward`` returns the checkpoint's own logits. What the wrapper adds is the view
every consumer reads: ``encoder`` (the checkpoint's base model, for the family adapter, attributions and HotFlip
through ``get_input_embeddings()``), ``head`` (its last linear layer: ``classifier``, ``out_proj`` or ``score``)
and ``pooled()`` (what enters that layer, one row per text: for a decoder's ``score``, its last real token), so
``head(pooled(x))`` equals ``forward(x)`` and OOD detectors, the ONNX export and monitoring see the same features.

The folder keeps the checkpoint's own files (``config.json``, safetensors weights, tokenizer) beside
``trustfm_model.json`` with ``architecture: hf-sequence-classification``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ARCHITECTURE = "hf-sequence-classification"


def _final_linear(model: nn.Module) -> nn.Linear:
    """The layer that turns features into logits: the last linear layer with ``num_labels`` outputs."""
    candidates = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == model.config.num_labels]
    if not candidates:
        from trustfm.errors import ConfigError

        raise ConfigError(f"{type(model).__name__}: no linear layer with {model.config.num_labels} outputs (the "
                          "classification head) was found")
    return candidates[-1]


class HFSequenceClassifier(nn.Module):
    """``forward(input_ids, attention_mask, inputs_embeds) -> logits`` (batch, num_labels) of a Transformers
    sequence classifier, with trustfm's ``encoder`` / ``head`` / ``pooled`` view (see the module docstring)."""

    pooling = "model"  # the checkpoint's own pooling, whatever it is

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dropout = nn.Identity()  # the checkpoint's dropouts are its own, inside ``model``

    @property
    def encoder(self) -> nn.Module:
        return self.model.base_model

    @property
    def head(self) -> nn.Linear:
        return _final_linear(self.model)

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds).logits

    def pooled(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """What enters the final linear layer, (batch, features): a decoder's score reads every position and the
        model picks the last real token's logits, so the same position is picked here."""
        captured = []
        handle = self.head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            self.forward(input_ids, attention_mask, inputs_embeds)
        finally:
            handle.remove()
        features = captured[-1]
        if features.dim() == 3:
            positions = torch.arange(1, features.shape[1] + 1, device=features.device)
            if attention_mask is None:
                last = torch.full((features.shape[0],), features.shape[1] - 1, device=features.device)
            else:
                last = (attention_mask * positions).argmax(dim=1)
            features = features[torch.arange(features.shape[0], device=features.device), last]
        return features


def load_hf_classifier(folder: str | Path, *, allow_pickle: bool = False, config=None) -> HFSequenceClassifier:
    """The checkpoint in ``folder`` (safetensors unless ``allow_pickle``), in eval mode; ``config`` builds it empty
    instead (a pruned child's shapes are set before its weights are loaded)."""
    from transformers import AutoModelForSequenceClassification

    from trustfm.models.loading import check_weight_format, quiet_transformers

    quiet_transformers()
    if config is not None:
        def build(**attention):
            return AutoModelForSequenceClassification.from_config(config, **attention)
    else:
        safetensors = check_weight_format(Path(folder), allow_pickle=allow_pickle)

        def build(**attention):
            return AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True,
                                                                      use_safetensors=safetensors, **attention)
    try:
        model = build(attn_implementation="sdpa")
    except (ValueError, ImportError):  # some families have no SDPA path; the eager one is always there
        model = build(attn_implementation="eager")
    return HFSequenceClassifier(model).eval()
