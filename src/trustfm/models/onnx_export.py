"""Export a classifier to an ONNX graph that ONNX Runtime runs without torch model code.

The export uses eager attention: ONNX Runtime's optimiser recognises its pattern,
while the fused SDPA op exports as a generic graph. Compression quantises these
graphs (:mod:`trustfm.compress.onnx`); serving runs a graph exported at start-up
(:meth:`trustfm.models.predictor.Predictor.onnx_runtime_copy`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch


class LogitsAndPooled(torch.nn.Module):
    """The classifier with the two outputs the Predictor reads: logits and the pooled features."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, *inputs):
        pooled = self.classifier.pooled(*inputs)
        return self.classifier.head(pooled), pooled


@contextlib.contextmanager
def quiet_export():
    """The exporter's tracer warnings and ONNX Runtime's quantisation advice are not the user's to act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(model, tokenizer, path: Path, *, opset: int = 17) -> Path:
    """Write ``model`` (a TextClassifier) to ``path`` as an ONNX graph with dynamic batch and sequence axes.

    Inputs ``input_ids``/``attention_mask`` (int64, (batch, tokens)); outputs ``logits`` (batch, classes)
    and ``pooled`` (batch, hidden). An image classifier (``tokenizer`` None) takes ``pixel_values`` (float32,
    (batch, 3, size, size), in [0, 1]) instead.
    """
    import copy

    clone = copy.deepcopy(model).eval()
    if tokenizer is None:
        sample = torch.rand(2, 3, clone.image_size, clone.image_size)
        with quiet_export(), torch.no_grad():
            torch.onnx.export(LogitsAndPooled(clone), (sample,), str(path), input_names=["pixel_values"],
                              output_names=["logits", "pooled"], opset_version=opset, dynamo=False,
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"},
                                            "pooled": {0: "batch"}})
        return path
    if hasattr(clone.encoder, "set_attn_implementation"):
        clone.encoder.set_attn_implementation("eager")
    sample = tokenizer(["an example sentence for tracing", "short"], padding=True, return_tensors="pt")
    dynamic = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
               "logits": {0: "batch"}, "pooled": {0: "batch"}}
    with quiet_export(), torch.no_grad():
        # the TorchScript exporter: the dynamo one took 8x longer here for the same graph
        torch.onnx.export(LogitsAndPooled(clone), (sample["input_ids"], sample["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits", "pooled"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    return path
