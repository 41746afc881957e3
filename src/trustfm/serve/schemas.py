"""The service's request and response models: what the OpenAPI schema publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints, model_validator


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, min_length=1, description="texts to classify (a text model), "
                                                                            "answered in this order")
    images: list[StrictStr] | None = Field(
        None, min_length=1, description="images to classify (an image model): each an encoded file (PNG, JPEG, ...) "
                                        "in base64, answered in this order")
    groups: list[Annotated[str, StringConstraints(max_length=128)] | None] | None = Field(
        None, description="optional group of each input (same length as texts or images), logged for per-group "
                          "monitoring; never returned")

    @model_validator(mode="after")
    def _one_kind_of_input(self):
        if (self.texts is None) == (self.images is None):
            raise ValueError("send either texts or images")
        blank = next((i for i, t in enumerate(self.texts or []) if not t.strip()), None)
        if blank is not None:
            raise ValueError(f"texts[{blank}] is empty or blank: there is nothing to classify")
        inputs = self.texts if self.texts is not None else self.images
        if self.groups is not None and len(self.groups) != len(inputs):
            raise ValueError(f"groups has {len(self.groups)} entries for {len(inputs)} inputs")
        return self


class Prediction(BaseModel):
    label: str | None = Field(..., description="the answer; null when an output rule abstained")
    confidence: float | None = Field(..., description="probability of the model's label (null with top1 disclosure)")
    probabilities: dict[str, float]
    truncated: bool = Field(..., description="the text was cut to the model's max_length tokens")
    ood: bool | None = Field(..., description="out-of-distribution by the run's saved detector; null: no detector")
    model_label: str | None = Field(None, description="with output rules: the model's own label")
    rule: str | None = Field(None, description="with output rules: the rule that decided (null: none matched)")


class PredictResponse(BaseModel):
    request_id: str
    model_sha256: str
    predictions: list[Prediction]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(..., min_length=1)
    max_words: int = Field(64, ge=1, le=256, description="words scored, from the start")

    @model_validator(mode="after")
    def _not_blank(self):
        if not self.text.strip():
            raise ValueError("text is empty or blank: there is nothing to explain")
        return self


class WordAttribution(BaseModel):
    word: str
    score: float  # drop of the predicted class's probability when the word is removed (positive: supports it)


class ExplainResponse(BaseModel):
    request_id: str
    label: str
    probability: float
    method: str
    attributions: list[WordAttribution]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: StrictStr = Field(..., min_length=1, max_length=36)
    position: int = Field(0, ge=0, description="the text's position in that request")
    label: StrictStr = Field(..., description="the true class")


def release_gate(run_dir: Path) -> dict | None:
    """``results/gate.json`` of ``run_dir`` as the service shows it (policy, passed, outcomes), or None."""
    import json

    from trustfm.runs import RunPaths

    path = RunPaths(Path(run_dir)).result("gate")
    if not path.is_file():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    return {k: document.get(k) for k in ("policy", "passed", "outcomes")}


class ModelInfo(BaseModel):
    run: str
    model_sha256: dict[str, str]
    classes: list[str]
    format: str  # the run's model format: torch, torch-int8 or onnx
    backend: str  # what answers: "torch", or "onnxruntime" (an ONNX child, or a torch model exported at start-up)
    max_length: int
    compression: dict | None = None  # a compressed run: its parent and method
    # results/gate.json at release time: policy, passed, outcomes; ``overridden`` when a failed gate is served
    # under allow_failed_gate
    gate: dict | None = None
    report_signed: bool

    @classmethod
    def from_run(cls, run_dir: Path, model, hashes: dict[str, str], *, gate: dict | None) -> "ModelInfo":
        from trustfm.runs import RunRecord, RunPaths

        paths = RunPaths(Path(run_dir))
        info = RunRecord.load(paths)
        compression = (info.model_extra or {}).get("compression")
        return cls(run=paths.root.name, model_sha256=hashes, classes=model.label_names,
                   format=model.predictor.meta.get("format", "torch"), backend=model.backend,
                   max_length=model.predictor.max_length,
                   compression=None if compression is None else {"parent": Path(compression["parent"]).name,
                                                                 "method": compression["method"]},
                   gate=gate, report_signed=paths.report_json.is_file())
