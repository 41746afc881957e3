"""Quantise a classifier's ONNX graph (:mod:`trustfm.models.onnx_export`) to int8 with ONNX Runtime.

Dynamic int8 quantises the weights of every MatMul ahead of time and the activations per
batch at run time; static int8 also fixes the activation ranges from a calibration set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trustfm.models.onnx_export import export_onnx, quiet_export
from trustfm.models.onnx_session import ONNX_FILE


class _Calibration:
    """ONNX Runtime calibration reader over tokenised texts, one padded batch at a time."""

    def __init__(self, tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int = 16):
        self.batches = []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                            max_length=max_length, return_tensors="np")
            self.batches.append({"input_ids": enc["input_ids"].astype(np.int64),
                                 "attention_mask": enc["attention_mask"].astype(np.int64)})
        self._iter = iter(self.batches)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self.batches)


class _ImageCalibration:
    """ONNX Runtime calibration reader over decoded images (n, size, size, 3) uint8, one batch at a time."""

    def __init__(self, pixels: np.ndarray, *, batch_size: int = 16):
        values = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        self.batches = [{"pixel_values": values[i:i + batch_size]} for i in range(0, len(values), batch_size)]
        self._iter = iter(self.batches)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self.batches)


def quantize_onnx(source: Path, target: Path, *, mode: str = "dynamic", tokenizer=None,
                  calibration_texts: Sequence = (), max_length: int = 128) -> Path:
    """Int8 copy of the fp32 graph ``source`` at ``target``.

    ``mode="dynamic"``: int8 weights (per output channel), activation scales computed per batch at run time.
    ``mode="static"``: int8 weights and activations, with activation ranges from ``calibration_texts``
    (QDQ format, per-channel weights).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    with quiet_export():
        if mode == "dynamic":
            # per-channel weights: per-tensor ones kept only 96.9% of SST-2 dev labels (1.0 point of accuracy
            # lost), per-channel 98.7% (0.1 point) at about the same speed
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        elif mode == "static":
            # an image model calibrates on decoded images and quantises its convolutions too
            images = tokenizer is None
            reader = (_ImageCalibration(np.asarray(calibration_texts)) if images else
                      _Calibration(tokenizer, calibration_texts, max_length=max_length))
            quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"] if images else ["MatMul", "Gemm"],
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            raise ValueError(f"mode must be 'dynamic' or 'static', not {mode!r}")
    return target


def write_onnx_model(model, tokenizer, folder: Path, *, quantize: str | None = None,
                     calibration_texts: Sequence = (), max_length: int = 128) -> Path:
    """Write ``folder/model.onnx`` (fp32, or int8 with ``quantize`` = "dynamic"/"static") and the tokenizer
    (none for an image model, whose static calibration set is decoded images)."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / ("model-fp32.onnx" if quantize else ONNX_FILE)
    export_onnx(model, tokenizer, fp32)
    if quantize:
        quantize_onnx(fp32, folder / ONNX_FILE, mode=quantize, tokenizer=tokenizer,
                      calibration_texts=calibration_texts, max_length=max_length)
        fp32.unlink()
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        model.encoder.config.save_pretrained(folder)
    return folder / ONNX_FILE
