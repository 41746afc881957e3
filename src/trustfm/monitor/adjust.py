"""``adjust_run``: re-fit the model's calibration and decision thresholds on production feedback, as a new run.

Method: bias-corrected temperature scaling (Alexandari, Kundaje and Shrikumar, ICML 2020): the served logits ``z``
become ``z / T + b`` with one temperature ``T`` > 0 and a bias per class (``b[0] = 0``), fitted by minimising the
negative log-likelihood of the feedback labels. ``T`` fixes over- or under-confidence; ``b`` moves the decision
thresholds to production's class balance (label shift). Both are folded into the classifier head
(``W' = W / T``, ``c' = c / T + b``), so every consumer (audits, gradients, ONNX export, serving) sees the adjusted
model, and its weight hash, signed like any run's, differs from the parent's.

The numbers reported before and after are cross-fitted: fitted on one half of the feedback and measured on the
other, then the other way round, so the gain is not measured on the rows it was fitted to. The adjustment
written is fitted on all the feedback.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from trustfm.errors import ConfigError

MIN_FEEDBACK = 50


class AdjustmentRecord(BaseModel):
    """The new run's ``adjustment`` block: parent, fitted ``temperature`` and ``bias`` (per class), how many
    feedback rows, and the cross-fitted metrics before and after (accuracy, macro-F1, ECE, NLL)."""

    run_dir: str
    parent: str
    method: str
    temperature: float
    bias: dict[str, float]
    feedback_rows: int
    before: dict[str, float]
    after: dict[str, float]
    log: str


def _nll(params: np.ndarray, log_proba: np.ndarray, labels: np.ndarray) -> float:
    adjusted = log_proba / np.exp(params[0]) + np.concatenate([[0.0], params[1:]])
    adjusted -= adjusted.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(adjusted).sum(axis=1))
    return float(np.mean(log_norm - adjusted[np.arange(len(labels)), labels]))


def fit_temperature_and_bias(proba: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(T, b (k,)) minimising the NLL of ``labels`` (n,) under ``softmax(log(proba) / T + b)``; proba (n, k)."""
    from scipy.optimize import minimize

    log_proba = np.log(np.clip(proba, 1e-12, 1.0))
    k = proba.shape[1]
    found = minimize(_nll, np.zeros(k), args=(log_proba, labels), method="L-BFGS-B",
                     bounds=[(-3.0, 3.0)] + [(-10.0, 10.0)] * (k - 1))
    return float(np.exp(found.x[0])), np.concatenate([[0.0], found.x[1:]])


def apply_adjustment(proba: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    z = np.log(np.clip(proba, 1e-12, 1.0)) / temperature + bias
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _scores(proba: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    from trustfm.audit.performance.evaluation import evaluate_predictions

    result = evaluate_predictions(labels, proba, names, bootstrap_samples=0)
    return {"accuracy": result.accuracy.value, "macro_f1": result.macro_f1.value,
            "expected_calibration_error": result.expected_calibration_error, "log_loss": result.log_loss}


def adjust_run(run_dir: str | Path, *, log_url: str, output_dir: str | Path, seed: int = 0) -> AdjustmentRecord:
    """Fit the adjustment on the feedback in ``log_url`` for ``run_dir``'s model and write the adjusted model as
    the new run ``output_dir`` (config, lineage, evaluation and reference profile included)."""
    import torch

    from trustfm.audit.performance.plugin import evaluate_run
    from trustfm.compress.run import _check_output_dir
    from trustfm.fileio import atomic_path
    from trustfm.models.classifier import load_classifier, save_classifier
    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.monitor.logreader import read_log
    from trustfm.monitor.reference import build_reference
    from trustfm.runs import RunPaths, RunRecord, existing_run, now_iso
    from trustfm.serve.requestlog import RequestLog

    parent = existing_run(run_dir)
    output_dir = Path(output_dir)
    _check_output_dir(parent.root, output_dir)
    info = RunRecord.load(parent)
    model, tokenizer, meta = load_classifier(parent.model) if (parent.model / "trustfm_model.json").is_file() \
        else (None, None, {})
    if model is None or meta.get("format", "torch") != "torch" or "structure" in meta:
        raise ConfigError(f"{parent.root}: adjust works on a float torch model; adjust its parent, then compress "
                          "the adjusted run again")
    names = list(meta["label_names"])
    logged, _ = read_log(log_url, model_sha256=model_fingerprint(model_weight_hashes(parent.model)),
                         label_names=names)
    usable = (logged.true_label >= 0) & ~np.isnan(logged.probabilities).any(axis=1)
    n = int(usable.sum())
    if n < MIN_FEEDBACK:
        raise ConfigError(f"{RequestLog.masked(log_url)}: {n} feedback-labelled answers of this model; adjust needs "
                          f"at least {MIN_FEEDBACK} (send true labels to /v1/feedback)")
    proba = logged.probabilities[usable]
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = logged.true_label[usable]
    halves = np.array_split(np.random.default_rng(seed).permutation(n), 2)
    crossed = np.empty_like(proba)
    for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        temperature, bias = fit_temperature_and_bias(proba[fit], labels[fit])
        crossed[held] = apply_adjustment(proba[held], temperature, bias)
    temperature, bias = fit_temperature_and_bias(proba, labels)
    started = time.perf_counter()
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        child = RunPaths(tmp)
        with torch.no_grad():
            model.head.weight.div_(temperature)
            model.head.bias.div_(temperature).add_(torch.as_tensor(bias, dtype=model.head.bias.dtype))
        save_classifier(model, tokenizer, child.model, label_names=names,
                        extra={k: v for k, v in meta.items() if k not in ("label_names", "pooling", "dropout")})
        shutil.copy2(parent.config, child.config)
        if parent.rejected.exists():
            shutil.copy2(parent.rejected, child.rejected)
        block = {"parent": str(parent.root.resolve()), "parent_model_sha256": model_weight_hashes(parent.model),
                 "method": "bias-corrected temperature scaling on production feedback",
                 "temperature": temperature, "bias": {name: float(b) for name, b in zip(names, bias)},
                 "feedback_rows": n, "before": _scores(proba, labels, names), "after": _scores(crossed, labels, names),
                 "log": RequestLog.masked(log_url), "seconds": round(time.perf_counter() - started, 2)}
        record = info.model_dump(mode="json", exclude_none=True)
        record.update(status="complete", started=now_iso(), finished=now_iso(), adjustment=block,
                      model_sha256=model_weight_hashes(child.model))
        record.pop("compression", None)
        RunRecord.model_validate(record).save(child)
        child.results.mkdir()
    evaluate_run(output_dir)
    build_reference(output_dir)
    return AdjustmentRecord(run_dir=str(output_dir), **{k: v for k, v in block.items() if k != "seconds" and
                                                       k != "parent_model_sha256"})
