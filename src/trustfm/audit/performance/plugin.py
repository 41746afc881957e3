"""The performance audit (evaluation on the test split) as a registered audit."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.performance.evaluation import PerformanceResult
from trustfm.audit.registry import register_audit
from trustfm.errors import DataError

log = logging.getLogger("trustfm")


def evaluate_run(run: str | Path | AuditContext, *, data_path: str | Path | None = None,
                 show_progress: bool = False):
    """Evaluate the run's best model on its test split (validation when it has none), or on ``data_path``.

    Writes ``results/performance.json`` (the run's own split) or
    ``results/performance-<file stem>.json`` and returns the
    :class:`~trustfm.audit.performance.PerformanceResult`.
    """
    from trustfm.audit.performance.evaluation import evaluate_predictions
    from trustfm.data.prepare import load_labelled
    from trustfm.data.redaction import redact_texts

    ctx = as_context(run, show_progress=show_progress)
    predictor, config = ctx.predictor, ctx.config
    names = predictor.label_names
    if data_path is None:
        part, split, name = ctx.eval_part, ctx.eval_split, "performance"
    else:
        part = load_labelled(Path(data_path), config.data, known_labels=names)
        part.texts = redact_texts(part.texts, config.privacy)
        split, name = str(data_path), f"performance-{Path(data_path).stem}"
    if len(part) == 0:
        raise DataError("no rows to evaluate", file=part.file)
    started = time.perf_counter()
    proba = predictor.predict_proba(part.texts, show_progress=show_progress)
    index = {n: i for i, n in enumerate(names)}
    y_true = np.fromiter((index[x] for x in part.labels), dtype=np.int64, count=len(part))
    result = evaluate_predictions(y_true, proba, names, split=split, bootstrap_samples=ctx.bootstrap.samples,
                                  confidence=ctx.bootstrap.confidence, n_bins=config.evaluate.calibration_bins,
                                  seed=ctx.bootstrap.seed)
    log.info("evaluated %d rows in %.1fs", len(part), time.perf_counter() - started)
    ctx.save(name, result)
    return result


@register_audit("performance", "accuracy, F1, ROC-AUC, calibration with intervals on the test split",
                results=(PerformanceResult,), modalities=("text", "image"))
def audit_performance_run(run: str | Path | AuditContext, *, show_progress: bool = False) -> dict[str, object]:
    return {"performance": evaluate_run(run, show_progress=show_progress)}
