"""A classifier exported to ONNX, run by ONNX Runtime: no torch model code at inference time.

The graph (written by :func:`trustfm.models.onnx_export.export_onnx`) takes ``input_ids`` and
``attention_mask`` (int64, shape (batch, tokens)) and returns ``logits`` (batch, classes)
and ``pooled`` (batch, hidden): the same two things the torch classifier gives the
:class:`~trustfm.models.predictor.Predictor`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"


def session_options(*, threads: int | None = None, spinning: bool = True):
    """ONNX Runtime session options: every graph optimisation on, ``threads`` intra-op threads (default: all cores).

    ``spinning`` False: the threads sleep between runs instead of busy-waiting for the next one, which leaves
    the cores to other work in the process. In the service at 32 connections (3 alternated rounds) the log's
    redaction then keeps up better: +22% (11–34%) in the rate at which every answer is also redacted, +3%
    (−4 to +17%) in answers a second; back-to-back small batches alone run about 5% slower.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's business
    return options


class OnnxClassifier:
    """``model.onnx`` of a model folder (or an ``.onnx`` file itself) in an ONNX Runtime CPU session."""

    def __init__(self, model_dir: str | Path, *, threads: int | None = None, spinning: bool = True):
        from trustfm.errors import ConfigError

        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("this model is an ONNX graph and needs onnxruntime: pip install 'trustfm[compress]'") from None
        path = Path(model_dir) if str(model_dir).endswith(".onnx") else Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise ConfigError(f"{model_dir} is an ONNX model folder without {ONNX_FILE}")
        self.session = ort.InferenceSession(str(path), session_options(threads=threads, spinning=spinning),
                                            providers=["CPUExecutionProvider"])

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (b, classes) and pooled features (b, hidden), float32, for one padded batch."""
        return self.run_inputs({"input_ids": input_ids, "attention_mask": attention_mask})

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Logits and pooled features for named graph inputs (``pixel_values`` float32 (b, 3, s, s) for images)."""
        logits, pooled = self.session.run(["logits", "pooled"], inputs)
        return logits, pooled


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) logits, float32; each row sums to 1."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
