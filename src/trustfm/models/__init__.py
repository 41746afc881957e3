"""Model stage: pretrained encoders from local folders, the classifier built on them, and the one ``Predictor``
every consumer loads a trained model with (torch, int8 or ONNX Runtime).

Names are resolved on first use, so importing the package (e.g. to load an ONNX model) pulls in no torch
model code.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TextClassifier": "trustfm.models.classifier",
    "build_classifier": "trustfm.models.classifier",
    "init_head_from_descriptions": "trustfm.models.classifier",
    "load_classifier": "trustfm.models.classifier",
    "save_classifier": "trustfm.models.classifier",
    "default_model_dir": "trustfm.models.loading",
    "resolve_model_dir": "trustfm.models.loading",
    "Predictor": "trustfm.models.predictor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trustfm.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
