"""A sequence classifier: pretrained encoder, pooling, dropout, linear head.

Saved as one folder: the encoder in Hugging Face layout (``config.json`` and
``model.safetensors``), the head in ``head.safetensors``, the tokenizer files,
and ``trustfm_model.json`` with class names and pooling.

A compressed classifier (:mod:`trustfm.compress`) records its ``format`` there too:

- ``torch`` (default): the layout above; a pruned one adds its ``structure``
  (:mod:`trustfm.models.structure`) and keeps all weights in ``classifier.safetensors``;
- ``torch-int8``: torchao int8 weights (its safetensors encoding) in ``classifier.safetensors``;
- ``onnx``: ``model.onnx`` for ONNX Runtime, loaded by :class:`~trustfm.models.predictor.Predictor`
  without any torch model code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from trustfm.config.schema import ModelConfig
from trustfm.models.loading import load_encoder, resolve_model_dir

MODEL_META = "trustfm_model.json"
HEAD_FILE = "head.safetensors"
STATE_FILE = "classifier.safetensors"  # the whole classifier's weights, for pruned and int8 models
FORMATS = ("torch", "torch-int8", "onnx")
POOLINGS = ("auto", "mean", "cls", "last")


class TextClassifier(nn.Module):
    """``forward(input_ids, attention_mask) -> logits`` of shape (batch, num_labels).

    ``inputs_embeds`` may replace ``input_ids`` (shape (batch, tokens, hidden)),
    which is how embedding-space perturbations (adversarial training, gradient
    attributions) reach the model.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, *, pooling: str = "auto", dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        if pooling == "auto":
            from trustfm.models.families import is_decoder

            # a causal decoder's last real token is the only one that has read the whole text
            pooling = "last" if is_decoder(encoder) else "mean"
        self.encoder = encoder
        self.pooling = pooling  # resolved: mean, cls or last
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def pooled(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled text representation, shape (batch, hidden)."""
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        ).last_hidden_state
        if self.pooling == "cls":
            return out[:, 0]
        if self.pooling == "last":
            if attention_mask is None:
                return out[:, -1]
            # the last position whose mask is 1: right padding or left padding alike
            positions = torch.arange(1, out.shape[1] + 1, device=out.device)
            last = (attention_mask * positions).argmax(dim=1)
            return out[torch.arange(out.shape[0], device=out.device), last]
        if attention_mask is None:
            return out.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(input_ids, attention_mask, inputs_embeds)))


def build_classifier(config: ModelConfig, label_names: list[str]):
    """A new classifier on the configured pretrained encoder; returns (model, tokenizer).

    With ``config.label_descriptions`` the head starts as a zero-shot classifier on them
    (:func:`init_head_from_descriptions`), else at random.
    """
    path = resolve_model_dir(config.name_or_path)
    encoder, tokenizer = load_encoder(path, allow_pickle=config.allow_pickle, dropout=config.dropout)
    model = TextClassifier(encoder, len(label_names), pooling=config.pooling, dropout=config.dropout)
    if config.label_descriptions is not None:
        from trustfm.errors import ConfigError

        described = config.label_descriptions
        missing = [name for name in label_names if name not in described]
        unknown = [name for name in described if name not in label_names]
        if missing or unknown:
            raise ConfigError(
                f"model.label_descriptions must describe exactly the classes {label_names}: "
                f"missing {missing}, unknown {unknown}"
            )
        init_head_from_descriptions(model, tokenizer, [described[name] for name in label_names])
    return model, tokenizer


def init_head_from_descriptions(
    model: TextClassifier, tokenizer, descriptions: list[list[str]], *, margin: float = 4.0
) -> float:
    """Set the head to a zero-shot classifier: class ``c``'s weight row points from the mean of all classes'
    description embeddings (their centre) to the mean embedding of class ``c``'s descriptions, and the bias
    measures from that centre, so each class's own mean description scores highest.

    ``descriptions``: one list of texts per class, in head order. The rows are scaled so that a class's own
    mean description embedding scores ``margin`` logits (natural-log odds) above the mean of the other classes'
    scores, averaged over classes: a confident but not saturated start. Only these public texts are read, so
    under DP the initialisation costs no privacy budget. Fine-tuning then starts from a head that already
    separates the classes, so the first steps' encoder gradients do not flow through a random head (measured
    gains on SST-2 are small; see the README). Returns the zero-shot margin before scaling (units of the pooled
    features' dot product; must be > 0).
    """
    from trustfm.errors import ConfigError

    k = model.num_labels
    if len(descriptions) != k:
        raise ValueError(f"{len(descriptions)} description lists for {k} classes")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        centres = []
        for texts in descriptions:
            batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            centres.append(model.pooled(batch["input_ids"], batch["attention_mask"]).mean(dim=0))
        centres = torch.stack(centres)  # (k, hidden)
        offsets = centres - centres.mean(dim=0, keepdim=True)
        rows = offsets / offsets.norm(dim=1, keepdim=True).clamp_min(1e-12)
        scores = offsets @ rows.T  # scores[i, c]: class c's raw logit for class i's centre
        others = (scores.sum(dim=1) - scores.diagonal()) / max(k - 1, 1)
        raw_margin = float((scores.diagonal() - others).mean())
        if not raw_margin > 1e-6:
            raise ConfigError("model.label_descriptions: the encoder does not tell the classes' descriptions apart")
        scale = margin / raw_margin
        model.head.weight.copy_(rows * scale)
        model.head.bias.copy_(-(rows @ centres.mean(dim=0)) * scale)
    model.train(was_training)
    return raw_margin


def save_classifier(
    model: TextClassifier, tokenizer, folder: str | Path, *, label_names: list[str], extra: dict | None = None
) -> Path:
    """Write the classifier folder crash-safely: a temporary folder, fsynced, then renamed over the old one.

    ``extra`` joins ``trustfm_model.json``; with ``structure`` (a pruned encoder) or ``format: torch-int8``
    (torchao int8 weights) every weight goes to one ``classifier.safetensors`` beside the unchanged encoder
    config, since the Hugging Face layout cannot describe either.
    """
    from safetensors.torch import save_file

    from trustfm.fileio import atomic_path

    folder = Path(folder)
    extra = extra or {}
    whole = "structure" in extra or extra.get("format") == "torch-int8"
    from trustfm.models.hf_classifier import ARCHITECTURE, HFSequenceClassifier

    imported = isinstance(model, HFSequenceClassifier)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if whole:
            tensors, header = _flat_state(model.state_dict())
            model.encoder.config.save_pretrained(tmp)
            save_file(tensors, str(tmp / STATE_FILE), metadata=header)
        elif imported:  # a checkpoint trained elsewhere keeps its own layout, head included
            model.model.save_pretrained(tmp, safe_serialization=True)
        else:
            model.encoder.save_pretrained(tmp, safe_serialization=True)
            save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()}, str(tmp / HEAD_FILE))
        tokenizer.save_pretrained(tmp)
        meta = {
            "label_names": list(label_names),
            "pooling": model.pooling,
            "dropout": model.dropout.p if isinstance(model.dropout, nn.Dropout) else 0.0,
            **({"architecture": ARCHITECTURE} if imported else {}),
            **extra,
        }
        (tmp / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def load_classifier(folder: str | Path):
    """Load a saved classifier folder; returns (model in eval mode, tokenizer, meta dict)."""
    from safetensors.torch import load_file

    from trustfm.errors import ConfigError

    folder = Path(folder)
    meta_path = folder / MODEL_META
    if not meta_path.is_file():
        raise ConfigError(f"{folder} is not a trustfm model folder (no {MODEL_META})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    fmt = meta.get("format", "torch")
    if fmt not in ("torch", "torch-int8"):
        raise ConfigError(f"{folder} holds a {fmt} model, which has no torch form: load it with Predictor")
    if (folder / STATE_FILE).is_file():
        return _load_whole(folder, meta), _load_tokenizer(folder), meta
    if meta.get("architecture") == "hf-sequence-classification":
        from trustfm.models.hf_classifier import load_hf_classifier

        return load_hf_classifier(folder), _load_tokenizer(folder), meta
    encoder, tokenizer = load_encoder(folder, allow_pickle=False)
    model = TextClassifier(
        encoder, len(meta["label_names"]), pooling=meta["pooling"], dropout=meta.get("dropout", 0.1)
    )
    model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    model.eval()
    return model, tokenizer, meta


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _flat_state(state: dict) -> tuple[dict, dict | None]:
    """Tensors and safetensors header of a state dict; torchao's int8 tensors are written in its own encoding."""
    if any(type(v) is not torch.Tensor and isinstance(v, torch.Tensor) for v in state.values()):
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        return flatten_tensor_state_dict(state)
    return {k: v.detach().contiguous() for k, v in state.items()}, None


def _load_whole(folder: Path, meta: dict) -> TextClassifier:
    """A pruned or int8 classifier: its encoder built from the config, shaped as recorded, then its weights."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from trustfm.models.structure import apply_structure

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if meta.get("architecture") == "hf-sequence-classification":
        from trustfm.models.hf_classifier import load_hf_classifier

        model = load_hf_classifier(folder, config=config)
        encoder = model.encoder
    else:
        try:
            encoder = AutoModel.from_config(config, attn_implementation="sdpa")
        except (ValueError, ImportError):  # some families have no SDPA path (DeBERTa); the eager one is always there
            encoder = AutoModel.from_config(config, attn_implementation="eager")
        model = None
    if meta.get("structure"):
        apply_structure(encoder, meta["structure"])
    if model is None:
        model = TextClassifier(encoder, len(meta["label_names"]), pooling=meta["pooling"],
                               dropout=meta.get("dropout", 0.1))
    tensors = load_file(str(folder / STATE_FILE))
    with safe_open(str(folder / STATE_FILE), "pt") as handle:
        header = handle.metadata()
    if meta.get("format") == "torch-int8" and header is not None:
        from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

        tensors, _ = unflatten_tensor_state_dict(tensors, header)
    model.load_state_dict(tensors, assign=True)
    model.eval()
    return model
