"""The reference profile: what the model's outputs look like on held-out data, computed once per run.

``trustfm train`` and ``trustfm compress`` save it in ``RUN_DIR/monitoring/`` (``reference.json`` for the
summary, ``reference.npz`` for the samples); ``trustfm monitor`` builds it on first use for older runs. Every
window of production traffic is compared with it, so no window touches the training data again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from trustfm.audit.context import AuditContext

from trustfm.errors import ConfigError
from trustfm.fileio import write_json_atomic
from trustfm.runs import existing_run, now_iso, read_json

REFERENCE_ROWS = 5000  # held-out rows profiled at most (a seeded sample beyond)
EMBEDDING_SAMPLE = 1000  # embeddings kept for the two-sample test


class ReferenceProfile(BaseModel):
    """Summary of the model's outputs on held-out rows (``split``, ``n`` rows).

    ``class_proportions``: share of each predicted class (k,), in ``label_names`` order; ``confidence``/``length``
    quantiles (5%, 25%, 50%, 75%, 95%); ``ood_threshold`` and ``ood_rate`` (share of held-out rows the saved
    detector flags, about 5% by construction; None without a detector); ``group_positive_rates``: share predicted
    as the positive class (fairness.positive_label, else a binary task's second; none on more classes) per identity
    axis mentioned; ``metrics``: accuracy, macro-F1 and expected
    calibration error on these rows. The samples (sorted confidences and lengths, embeddings, the embedding mean
    and covariance) live in ``reference.npz``.
    """

    model_sha256: str
    created: str
    split: str
    n: int
    label_names: list[str]
    class_proportions: list[float]
    confidence_quantiles: list[float]
    length_quantiles: list[float]
    ood_threshold: float | None
    ood_rate: float | None
    positive_label: str | None  # None: a task of more than two classes with no positive class configured
    group_positive_rates: dict[str, float]
    group_counts: dict[str, int]
    metrics: dict[str, float]
    embedding_dim: int


class Reference:
    """A loaded profile: :attr:`profile` and its samples (``confidences``, ``lengths``: sorted
    :class:`~trustfm.monitor.drift.SortedSample`; ``embeddings``: (m, d) float32; ``embedding_mean`` (d,),
    ``embedding_cov`` (d, d))."""

    def __init__(self, profile: ReferenceProfile, arrays: dict[str, np.ndarray]):
        from trustfm.monitor.drift import SortedSample

        self.profile = profile
        self.confidences = SortedSample(arrays["confidences"].astype(np.float64))
        self.lengths = SortedSample(arrays["lengths"].astype(np.float64))
        self.embeddings = arrays["embeddings"]
        self.embedding_mean = arrays["embedding_mean"]
        self.embedding_cov = arrays["embedding_cov"]


def reference_paths(run_dir: str | Path) -> tuple[Path, Path]:
    folder = existing_run(run_dir).root / "monitoring"
    return folder / "reference.json", folder / "reference.npz"


def build_reference(run: "str | Path | AuditContext") -> Reference:
    """Profile the run's model on its validation rows (test rows when it has none) and save the profile.
    ``run``: the run folder, or its already-open :class:`~trustfm.audit.context.AuditContext`."""
    from trustfm.audit.context import as_context
    from trustfm.audit.fairness.plugin import identity_mentions, positive_class_ids
    from trustfm.audit.performance.evaluation import evaluate_predictions
    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.models.onnx_session import softmax
    from trustfm.serve.model import load_ood_detector

    ctx = as_context(run)
    data = ctx.data
    split = "validation" if len(data.validation) else "test"
    part = getattr(data, split)
    if len(part) == 0:
        raise ConfigError(f"{ctx.paths.root}: no validation or test rows to profile the model on")
    rows = np.random.default_rng(ctx.config.seed).permutation(len(part))[:REFERENCE_ROWS]
    rows.sort()
    texts = [part.texts[i] for i in rows]
    gold = data.label_ids(part)[rows]
    predictor = ctx.predictor
    logits, embeddings = predictor.logits_and_embeddings(texts)
    proba = softmax(logits)
    predicted = proba.argmax(axis=1)
    k = predictor.num_labels
    detector = load_ood_detector(predictor.model_dir)
    ood_rate = None if detector is None else float(np.mean(detector[0].score(embeddings) > detector[1]))
    # the class whose rate per group is watched: the configured positive class, a binary task's second; none for
    # more classes (no class is singled out silently)
    positive = positive_class_ids(predictor.label_names, ctx.config.fairness.positive_label)
    axes = np.asarray(identity_mentions(texts))
    group_rates, group_counts = {}, {}
    for axis in sorted(set(axes) - {"none"}):
        members = axes == axis
        if positive is not None:
            group_rates[axis] = float(np.mean(np.isin(predicted[members], positive)))
        group_counts[axis] = int(members.sum())
    performance = evaluate_predictions(gold, proba, predictor.label_names, split=split, bootstrap_samples=0)
    confidences = proba.max(axis=1)
    lengths = np.asarray([len(t) for t in texts], dtype=np.float64)
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    sample = np.random.default_rng(ctx.config.seed + 1).permutation(len(texts))[:EMBEDDING_SAMPLE]
    profile = ReferenceProfile(
        model_sha256=model_fingerprint(model_weight_hashes(predictor.model_dir)), created=now_iso(), split=split,
        n=len(texts), label_names=list(predictor.label_names),
        class_proportions=(np.bincount(predicted, minlength=k) / len(texts)).tolist(),
        confidence_quantiles=np.quantile(confidences, quantiles).tolist(),
        length_quantiles=np.quantile(lengths, quantiles).tolist(),
        ood_threshold=None if detector is None else detector[1], ood_rate=ood_rate,
        positive_label=None if positive is None else ",".join(predictor.label_names[i] for i in positive),
        group_positive_rates=group_rates, group_counts=group_counts,
        metrics={"accuracy": performance.accuracy.value, "macro_f1": performance.macro_f1.value,
                 "expected_calibration_error": performance.expected_calibration_error},
        embedding_dim=int(embeddings.shape[1]))
    arrays = {"confidences": np.sort(confidences).astype(np.float64), "lengths": np.sort(lengths),
              "embeddings": embeddings[sample].astype(np.float32),
              "embedding_mean": embeddings.mean(axis=0).astype(np.float64),
              # a black-box model has no embeddings (n, 0): an empty covariance, and no embedding drift later
              "embedding_cov": (np.cov(embeddings, rowvar=False).astype(np.float32) if embeddings.shape[1]
                                else np.zeros((0, 0), dtype=np.float32))}
    json_path, npz_path = reference_paths(ctx.paths.root)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz_path, **arrays)
    write_json_atomic(json_path, profile.model_dump(mode="json"))
    return Reference(profile, arrays)


def load_reference(run_dir: str | Path, *, build_missing: bool = True) -> Reference:
    """The run's saved profile; built (and saved) first when missing and ``build_missing``.

    A profile saved for other weights (the run's model changed since) is rebuilt the same way.
    """
    from trustfm.models.loading import model_fingerprint, model_weight_hashes

    json_path, npz_path = reference_paths(run_dir)
    if json_path.is_file() and npz_path.is_file():
        profile = ReferenceProfile.model_validate(read_json(json_path))
        current = model_fingerprint(model_weight_hashes(existing_run(run_dir).model))
        if profile.model_sha256 == current:
            with np.load(npz_path) as arrays:
                return Reference(profile, dict(arrays))
    if not build_missing:
        raise ConfigError(f"{json_path}: no reference profile for this model (run trustfm monitor once to build it)")
    return build_reference(run_dir)
