"""What turns a row's input into model input, per modality: the one seam between texts and images.

Training, the ``Predictor`` and the audits hold a ``ModelInputs`` and call the same four things on it, whatever the
data is:

- :meth:`encode` a list of inputs (texts, or image paths/bytes/arrays) into an encoding with ``lengths``,
  ``truncated`` and ``make_batch(index, pad_id)`` (:class:`~trustfm.data.batching.EncodedTexts` or
  :class:`~trustfm.data.images.EncodedImages`);
- :meth:`encode_splits` every split of the prepared data (texts apply the length policy here; training images
  are augmented);
- :attr:`pad_id`, and :meth:`save` the trained model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trustfm.config.schema import DataConfig, ImageConfig, ModelConfig


class TextInputs:
    """Texts through the encoder's tokenizer, cut to ``max_length`` tokens."""

    modality = "text"

    def __init__(self, tokenizer, *, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def encode(self, texts: Sequence[str], *, augment: bool = False):
        from trustfm.data.batching import encode_texts

        return encode_texts(self.tokenizer, list(texts), self.max_length)

    def encode_splits(self, data, config: DataConfig) -> dict:
        from trustfm.data.prepare import apply_length_policies

        return apply_length_policies(data, self.tokenizer, config)

    def save(self, model, folder: Path, *, label_names: list[str], extra: dict) -> None:
        from trustfm.models.classifier import save_classifier

        save_classifier(model, self.tokenizer, folder, label_names=label_names, extra=extra)


class ImageInputs:
    """Images decoded, converted to RGB and squared to ``config.size``; training images augmented."""

    modality = "image"
    tokenizer = None
    pad_id = 0

    def __init__(self, config: ImageConfig, *, seed: int = 0):
        self.config = config
        self.seed = seed

    def encode(self, sources: Sequence, *, augment: bool = False):
        from trustfm.data.images import encode_images

        return encode_images(sources, self.config, augment=self.config.augment if augment else None, seed=self.seed)

    def encode_splits(self, data, config: DataConfig) -> dict:
        return {role: self.encode(part.texts, augment=role == "train") for role, part in data.parts().items()}

    def save(self, model, folder: Path, *, label_names: list[str], extra: dict) -> None:
        from trustfm.models.image import save_image_classifier

        save_image_classifier(model, folder, label_names=label_names,
                              extra={k: v for k, v in extra.items() if k != "max_length"})


def build_model(model_config: ModelConfig, data_config: DataConfig, label_names: list[str], *, seed: int):
    """A new classifier for the configured modality; returns (model, :class:`TextInputs` or :class:`ImageInputs`)."""
    if data_config.modality == "image":
        from trustfm.models.image import build_image_classifier

        model = build_image_classifier(num_labels=len(label_names), image_size=data_config.image.size,
                                       pretrained=model_config.pretrained, dropout=model_config.dropout,
                                       name_or_path=model_config.name_or_path)
        return model, ImageInputs(data_config.image, seed=seed)
    from trustfm.models.classifier import build_classifier

    model, tokenizer = build_classifier(model_config, label_names)
    return model, TextInputs(tokenizer, max_length=data_config.max_length)


def base_model_record(model_config: ModelConfig, data_config: DataConfig) -> dict:
    """What ``run.json`` records of the pretrained model a run starts from (name, folder or file, sha256)."""
    if data_config.modality == "image":
        from trustfm.models.image import ARCHITECTURE, pretrained_record, vision_model_type

        if not vision_model_type(model_config.name_or_path):
            return (pretrained_record() if model_config.pretrained else
                    {"name_or_path": ARCHITECTURE, "pretrained": False})
    from trustfm.models.loading import base_model_record as text_record

    return text_record(model_config.name_or_path)


def model_input_tensors(batch: dict) -> dict:
    """The keyword arguments a classifier's ``forward`` takes from a batch (``input_ids`` and ``attention_mask``,
    or ``pixel_values``); labels, weights and row indices stay out."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}
