"""Model stage: pretrained encoders from local folders, and the classifier built on them."""

from trustfm.models.classifier import (
    TextClassifier,
    build_classifier,
    init_head_from_descriptions,
    load_classifier,
    save_classifier,
)
from trustfm.models.loading import default_model_dir, resolve_model_dir

__all__ = [
    "TextClassifier",
    "build_classifier",
    "default_model_dir",
    "init_head_from_descriptions",
    "load_classifier",
    "resolve_model_dir",
    "save_classifier",
]
