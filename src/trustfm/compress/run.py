"""``compress_run``: a parent run folder in, a compressed child run folder out, checked against its parent.

The child folder is a run like any other (config, ``run.json``, ``model/``, ``results/``), so
``evaluate``, ``predict``, ``audit``, ``report``, ``gate`` and ``verify`` take it as they are.
Its ``run.json`` has a ``compression`` block: the parent's folder and weight hashes, the method
and its settings, and the fidelity measured before anything was written. A child whose
outputs moved further from the parent's than the method's tolerance is never written
(:class:`~trustfm.errors.FidelityError`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trustfm.errors import ConfigError, FidelityError

METHODS = ("onnx", "onnx-int8", "torch-int8", "distill", "prune")
IMAGE_METHODS = ("onnx", "onnx-int8")  # an image model's graph, exported whole; the others act on text encoders
FIDELITY_ROWS = 1000  # validation rows the child is checked on before it is written
BATCH_CHECK_ROWS = 32  # of those, rows also scored alone: an answer must not depend on the rest of its batch
SPEED_ROUNDS = 3  # alternated timing rounds of parent and child on the checked rows


class CompressionSettings(BaseModel):
    """What ``trustfm compress`` was asked to do. Fields a method does not use are ignored by it."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["onnx", "onnx-int8", "torch-int8", "distill", "prune"]
    calibration: Literal["dynamic", "static"] = "dynamic"  # onnx-int8: activation scales per batch, or calibrated
    calibration_rows: int = Field(256, ge=8)  # onnx-int8 static: training texts used for the activation ranges
    layers: int | None = Field(None, ge=1)  # distill: student layers (default: half the teacher's)
    fraction: float = Field(0.3, gt=0, lt=1)  # prune: share of heads and feed-forward units removed per layer
    epochs: int | None = Field(None, ge=1)  # student training epochs (distill: 3, prune recovery: 1)
    temperature: float = Field(2.0, gt=0)  # distill/prune: softmax temperature of the soft labels
    alpha: float = Field(0.5, ge=0, le=1)  # distill/prune: weight of the soft term (1 - alpha: gold labels)
    unlabelled: str | None = None  # distill/prune: extra texts (a file with a text column) labelled by the teacher
    public_texts_only: bool = False  # train the student only on ``unlabelled`` (required for a DP teacher)
    min_agreement: float | None = Field(None, ge=0, le=1)  # tolerance: share of rows whose label the child keeps
    max_proba_diff: float | None = Field(None, gt=0)  # tolerance: largest |p_child - p_parent| of any class


# the tolerances a child must meet unless the user sets them: an exact export must be exact, a quantised model
# must keep 98% of labels (the floor), a smaller trained model 90%
DEFAULT_TOLERANCE = {
    "onnx": {"min_agreement": 0.999, "max_proba_diff": 1e-3},
    "onnx-int8": {"min_agreement": 0.98},
    "torch-int8": {"min_agreement": 0.98},
    "distill": {"min_agreement": 0.90},
    "prune": {"min_agreement": 0.90},
}


class Fidelity(BaseModel):
    """How closely the child's outputs follow the parent's on the same rows."""

    rows: int
    split: str
    agreement: float  # share of rows with the same predicted class, in [0, 1]
    max_proba_diff: float  # largest |p_child - p_parent| over rows and classes
    mean_proba_diff: float  # mean over rows of the largest class difference
    min_agreement: float | None
    max_proba_diff_allowed: float | None
    # the child's answer for a text alone against the same text inside the checked rows' batches: the largest
    # probability difference over BATCH_CHECK_ROWS rows (float rounding only; a different label refuses the child)
    batch_max_proba_diff: float | None = None
    # parent seconds / child seconds for the checked rows on this machine, median of alternated rounds (> 1: the
    # child is faster), with its range
    speed_ratio: float | None = None
    speed_ratio_range: tuple[float, float] | None = None


class CompressionRecord(BaseModel):
    """The child's ``compression`` block in ``run.json`` (and what ``trustfm compress`` prints): its parent, the
    method, the settings given, the fidelity check, the weight sizes in bytes and the method's own details."""

    model_config = ConfigDict(extra="allow")

    run_dir: str | None = None  # the child folder (not stored in run.json: the folder may move)
    parent: str
    parent_model_sha256: dict[str, str]
    method: str
    settings: dict
    fidelity: Fidelity
    seconds: float
    size_bytes: int
    parent_size_bytes: int


def measure_fidelity(parent_proba: np.ndarray, child_proba: np.ndarray, *, split: str) -> dict:
    """Agreement and probability gaps between two (n, k) probability arrays of the same rows."""
    gap = np.abs(child_proba.astype(np.float64) - parent_proba.astype(np.float64))
    return {"rows": len(parent_proba), "split": split,
            "agreement": float((child_proba.argmax(1) == parent_proba.argmax(1)).mean()) if len(gap) else 1.0,
            "max_proba_diff": float(gap.max()) if gap.size else 0.0,
            "mean_proba_diff": float(gap.max(axis=1).mean()) if gap.size else 0.0}


def weights_size(model_dir: Path) -> int:
    """Bytes of a model folder's weight files (safetensors, ONNX)."""
    return sum(p.stat().st_size for p in [*model_dir.glob("*.safetensors"), *model_dir.glob("*.onnx")])


def _check_output_dir(parent: Path, output_dir: Path) -> None:
    if output_dir.resolve() == parent.resolve() or parent.resolve() in output_dir.resolve().parents:
        raise ConfigError(f"-o {output_dir}: the compressed run needs its own folder, outside its parent {parent}")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConfigError(f"-o {output_dir} already exists and is not empty: give a new folder")


def _read_unlabelled(settings: CompressionSettings, config) -> list[str]:
    from trustfm.data.io import read_table
    from trustfm.data.redaction import redact_texts

    if settings.unlabelled is None:
        return []
    frame = read_table(Path(settings.unlabelled))
    column = config.data.text_column
    if column not in frame.columns:
        raise ConfigError(f"--unlabelled {settings.unlabelled}: no text column '{column}' "
                          f"(columns: {', '.join(map(str, frame.columns))})")
    texts = [t for t in frame[column].astype(str).tolist() if t.strip()]
    if not texts:
        raise ConfigError(f"--unlabelled {settings.unlabelled}: no texts in column '{column}'")
    return redact_texts(texts, config.privacy)


def _student_rows(ctx, settings: CompressionSettings):
    """The rows a student trains on, with the parent's logits: the training split (unless public texts only)
    and the unlabelled texts. Refuses to train on a DP teacher's private texts."""
    from trustfm.compress.student import SoftLabels

    config = ctx.config
    unlabelled = _read_unlabelled(settings, config)
    if config.privacy.dp is not None and not settings.public_texts_only:
        raise ConfigError(
            f"{ctx.paths.root} was trained with differential privacy; training a student on its private training "
            "texts would spend privacy budget the run's guarantee does not cover. Give public texts with "
            "--unlabelled PATH and --public-texts-only")
    if settings.public_texts_only and not unlabelled:
        raise ConfigError("--public-texts-only needs --unlabelled PATH: the public texts to train the student on")
    texts, gold = [], np.zeros(0, dtype=np.int64)
    if not settings.public_texts_only:
        train = ctx.data.train
        texts, gold = list(train.texts), ctx.data.label_ids(train).astype(np.int64)
    texts += unlabelled
    if not texts:
        raise ConfigError(f"{ctx.paths.root} has no training rows to train a {settings.method} student on (an "
                          "imported model without its training data): give texts to learn from with --unlabelled "
                          "PATH")
    gold = np.concatenate([gold, np.full(len(unlabelled), -1, dtype=np.int64)])
    logits, _ = ctx.predictor.logits_and_embeddings(texts)
    return SoftLabels(texts=texts, gold=gold, teacher_logits=logits)


def _train_student(ctx, student, rows, settings: CompressionSettings, *, epochs: int, workdir: Path,
                   show_progress: bool) -> dict:
    from trustfm.compress.student import train_student

    config = ctx.config
    rows, validation, selected_on = _selection_rows(ctx, rows)
    train_config = config.train.model_copy(update={"epochs": epochs})
    state = train_student(student, ctx.predictor.tokenizer, rows, validation,
                          train_config=train_config, max_length=config.data.max_length, seed=config.seed,
                          temperature=settings.temperature, alpha=settings.alpha, checkpoint_dir=workdir / "checkpoints",
                          show_progress=show_progress)
    return {"rows": len(rows.texts), "unlabelled_rows": int((rows.gold < 0).sum()), "epochs": state.epoch,
            "best_epoch": state.best_epoch, "best_validation_macro_f1": state.best_metric,
            "selected_on": selected_on, "train_seconds": round(state.train_seconds, 1)}


def _selection_rows(ctx, rows):
    """(training rows, (texts, label ids) the best epoch is chosen on, what those are). The validation split
    where the run has one; else (an imported model) a tenth of the student's own rows, held out and judged
    against the teacher's labels: the test split is what the child is audited on, so it never picks the epoch."""
    from trustfm.compress.student import SoftLabels

    if len(ctx.data.validation):
        part = ctx.data.validation
        return rows, (part.texts, ctx.data.label_ids(part)), "the validation split (macro-F1 against gold labels)"
    order = np.random.default_rng(ctx.config.seed).permutation(len(rows.texts))
    cut = max(1, len(order) // 10)
    held, kept = np.sort(order[:cut]), np.sort(order[cut:])
    train = SoftLabels(texts=[rows.texts[i] for i in kept], gold=rows.gold[kept],
                       teacher_logits=rows.teacher_logits[kept])
    validation = ([rows.texts[i] for i in held], rows.teacher_logits[held].argmax(axis=1))
    return train, validation, (f"{len(held)} of the student's rows held out (macro-F1 against the teacher's "
                               "labels; the run has no validation split)")


def build_child_model(ctx, settings: CompressionSettings, model_dir: Path, *, workdir: Path,
                      show_progress: bool = False) -> dict:
    """Write the compressed model of ``ctx``'s run into ``model_dir``; returns what the method records."""
    from trustfm.models.classifier import save_classifier

    parent = ctx.predictor
    meta = {k: v for k, v in parent.meta.items() if k not in ("format", "structure", "compression")}
    model, tokenizer, method = parent.model, parent.tokenizer, settings.method
    if parent.modality == "image" and method not in IMAGE_METHODS:
        raise ConfigError(f"an image model compresses with {' or '.join(IMAGE_METHODS)}; {method} reshapes or "
                          "quantises a text encoder's layers")
    if method in ("onnx", "onnx-int8"):
        import onnxruntime

        from trustfm.compress.onnx import write_onnx_model
        from trustfm.fileio import write_json_atomic

        calibration: list[str] = []
        quantize = None
        if method == "onnx-int8":
            quantize = settings.calibration
            if quantize == "static":
                rng = np.random.default_rng(ctx.config.seed)
                train = ctx.data.train.texts
                calibration = [train[i] for i in rng.permutation(len(train))[:settings.calibration_rows]]
                if parent.modality == "image":  # the training images, decoded as the model sees them
                    calibration = parent.inputs.encode(calibration).pixels
        write_onnx_model(model, tokenizer, model_dir, quantize=quantize, calibration_texts=calibration,
                         max_length=parent.max_length)
        write_json_atomic(model_dir / "trustfm_model.json", {**meta, "format": "onnx"})
        return {"engine": f"onnxruntime {onnxruntime.__version__}", "quantization":
                None if quantize is None else f"int8 {quantize}", "calibration_rows": len(calibration) or None}
    if method == "torch-int8":
        import copy

        import torchao
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        from torch import nn

        quantized = copy.deepcopy(model)
        # the encoder's linear layers; the head is tiny and stays float
        head = quantized.head
        linear = [m for m in quantized.encoder.modules() if isinstance(m, nn.Linear) and m is not head]
        if not linear:
            raise ConfigError(f"torch-int8 quantises linear layers, and this {quantized.encoder.config.model_type} "
                              "model has none (its projections are Conv1D): compress it with onnx-int8")
        quantize_(quantized, Int8DynamicActivationInt8WeightConfig(),
                  filter_fn=lambda module, name: isinstance(module, nn.Linear) and module is not head)
        save_classifier(quantized, tokenizer, model_dir, label_names=parent.label_names,
                        extra={**meta, "format": "torch-int8"})
        return {"engine": f"torchao {torchao.__version__}",
                "quantization": "int8 weights (per channel) and int8 dynamic activations (per token)"}
    rows = _student_rows(ctx, settings)
    if method == "distill":
        from trustfm.compress.student import init_student

        student, chosen = init_student(model, settings.layers)
        trained = _train_student(ctx, student, rows, settings, epochs=settings.epochs or 3, workdir=workdir,
                                 show_progress=show_progress)
        save_classifier(student, tokenizer, model_dir, label_names=parent.label_names, extra=meta)
        return {"teacher_layers_kept": chosen, "layers": len(chosen), "training": trained}
    from trustfm.compress.student import prune_model

    import copy

    student = copy.deepcopy(model)
    validation = ctx.data.validation if len(ctx.data.validation) else ctx.data.train
    if not len(validation):
        raise ConfigError(f"{ctx.paths.root} has no validation or training rows to rank heads and units on (an "
                          "imported model without its data): import it with --data or --validation-data")
    structure = prune_model(student, tokenizer, validation.texts, ctx.data.label_ids(validation),
                            fraction=settings.fraction, max_length=parent.max_length)
    trained = _train_student(ctx, student, rows, settings, epochs=settings.epochs or 1, workdir=workdir,
                             show_progress=show_progress)
    save_classifier(student, tokenizer, model_dir, label_names=parent.label_names,
                    extra={**meta, "structure": structure})
    return {"heads_kept": [len(h) for h in structure["heads"]], "ffn_units_kept": structure["ffn_units"],
            "importance": "first-order Taylor |w * dL/dw| on the validation split", "training": trained}


SPEED_ARM_SECONDS = 0.2  # each arm of a round repeats its call until it has run at least this long


def speed_ratios(parent, child, texts, *, rounds: int = SPEED_ROUNDS) -> list[float]:
    """Per round, the seconds per call of ``parent(texts)`` over those of ``child(texts)`` (the two arms
    alternated, each warmed up once first, each repeated until it has run :data:`SPEED_ARM_SECONDS`, so a small
    set is not timed at the clock's noise): > 1 where the child is faster."""

    def per_call(predict) -> float:
        calls, started = 0, time.perf_counter()
        while True:
            predict(texts)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= SPEED_ARM_SECONDS:
                return elapsed / calls

    parent(texts[:8]), child(texts[:8])
    return [per_call(parent) / max(per_call(child), 1e-9) for _ in range(rounds)]


def check_fidelity(ctx, model_dir: Path, settings: CompressionSettings) -> Fidelity:
    """The child's outputs against the parent's on up to :data:`FIDELITY_ROWS` validation rows (test when the
    run has no validation rows); raises :class:`FidelityError` beyond the tolerance."""
    from trustfm.models.predictor import Predictor

    part_name = "validation" if len(ctx.data.validation) else "test"
    part = getattr(ctx.data, part_name)
    rows = np.random.default_rng(ctx.config.seed).permutation(len(part))[:FIDELITY_ROWS]
    texts = [part.texts[i] for i in rows]
    child = Predictor(model_dir, max_length=ctx.predictor.max_length, batch_size=ctx.predictor.batch_size,
                      image_config=ctx.predictor.inputs.config if ctx.predictor.inputs is not None else None)
    child_proba = child.predict_proba(texts)
    measured = measure_fidelity(ctx.predictor.predict_proba(texts), child_proba, split=part_name)
    alone = np.concatenate([child.predict_proba([t]) for t in texts[:BATCH_CHECK_ROWS]])
    measured["batch_max_proba_diff"] = float(np.abs(alone - child_proba[:len(alone)]).max(initial=0.0))
    ratios = speed_ratios(ctx.predictor.predict_proba, child.predict_proba, texts)
    measured["speed_ratio"] = float(np.median(ratios))
    measured["speed_ratio_range"] = (float(min(ratios)), float(max(ratios)))
    tolerance = {**DEFAULT_TOLERANCE[settings.method],
                 **{k: v for k, v in (("min_agreement", settings.min_agreement),
                                      ("max_proba_diff", settings.max_proba_diff)) if v is not None}}
    fidelity = Fidelity(**measured, min_agreement=tolerance.get("min_agreement"),
                        max_proba_diff_allowed=tolerance.get("max_proba_diff"))
    problems = []
    if fidelity.min_agreement is not None and fidelity.agreement < fidelity.min_agreement:
        problems.append(f"it keeps the parent's label on {fidelity.agreement:.2%} of {fidelity.rows} {part_name} "
                        f"rows, below the {fidelity.min_agreement:.2%} allowed (--min-agreement)")
    if fidelity.max_proba_diff_allowed is not None and fidelity.max_proba_diff > fidelity.max_proba_diff_allowed:
        problems.append(f"its probabilities differ from the parent's by up to {fidelity.max_proba_diff:.2g}, above "
                        f"the {fidelity.max_proba_diff_allowed:.2g} allowed (--max-proba-diff)")
    changed = int((alone.argmax(axis=1) != child_proba[:len(alone)].argmax(axis=1)).sum())
    if changed:
        problems.append(f"{changed} of {len(alone)} texts get another label alone than inside a batch (its answers "
                        "depend on the other texts of a batch)")
    if problems:
        raise FidelityError(f"the {settings.method} model of {ctx.paths.root} was not written: "
                            + "; ".join(problems))
    return fidelity


def compress_run(run_dir: str | Path, *, settings: CompressionSettings, output_dir: str | Path,
                 show_progress: bool = False) -> CompressionRecord:
    """Compress the best model of ``run_dir`` into a new run folder ``output_dir``, check it against the parent,
    evaluate it on the parent's test split, and return the child's ``compression`` block (with its folder)."""
    from trustfm.audit.context import AuditContext
    from trustfm.audit.performance.plugin import evaluate_run
    from trustfm.fileio import atomic_path
    from trustfm.models.loading import model_weight_hashes
    from trustfm.runs import RunPaths, RunRecord, now_iso

    ctx = AuditContext(run_dir, show_progress=show_progress)
    output_dir = Path(output_dir)
    _check_output_dir(ctx.paths.root, output_dir)
    parent_info = ctx.run_info
    if parent_info.status != "complete":
        raise ConfigError(f"{ctx.paths.root} is not a complete run (status {parent_info.status}): finish it first")
    if ctx.predictor.black_box:
        raise ConfigError(f"{ctx.paths.root} is a model behind an endpoint: it has no weights here to compress")
    if ctx.predictor.format != "torch":
        raise ConfigError(f"{ctx.paths.root} holds a {ctx.predictor.format} model; compress its torch parent "
                          f"({(parent_info.model_extra or {}).get('compression', {}).get('parent', 'the run it came from')})")
    started, clock = now_iso(), time.perf_counter()
    with atomic_path(output_dir) as tmp, tempfile.TemporaryDirectory(prefix="trustfm-compress-") as work:
        tmp.mkdir()
        child = RunPaths(tmp)
        details = build_child_model(ctx, settings, child.model, workdir=Path(work), show_progress=show_progress)
        fidelity = check_fidelity(ctx, child.model, settings)
        shutil.copy2(ctx.paths.config, child.config)
        if ctx.paths.rejected.exists():
            shutil.copy2(ctx.paths.rejected, child.rejected)
        parent_files = model_weight_hashes(ctx.paths.model)
        block = {
            "parent": str(ctx.paths.root.resolve()),
            "parent_model_sha256": parent_files,
            "method": settings.method,
            "settings": settings.model_dump(mode="json", exclude_defaults=True),
            "fidelity": fidelity.model_dump(mode="json"),
            "seconds": round(time.perf_counter() - clock, 1),
            # weight files only: the tokenizer and metadata are the same on both sides
            "size_bytes": weights_size(child.model),
            "parent_size_bytes": weights_size(ctx.paths.model),
            **details,
        }
        record = parent_info.model_dump(mode="json", exclude_none=True)
        record.update(status="complete", started=started, finished=now_iso(), compression=block,
                      model_sha256=model_weight_hashes(child.model))
        RunRecord.model_validate(record).save(child)
        child.results.mkdir()
    evaluate_run(output_dir, show_progress=show_progress)
    return CompressionRecord.model_validate({"run_dir": str(output_dir), **block})
