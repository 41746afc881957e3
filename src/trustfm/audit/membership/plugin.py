"""``trustfm audit membership``: membership inference against a run, with reference models for calibration.

Members are training rows of the run; non-members are its test (and
validation) rows, which it never trained on; equal numbers of each, at most
``max_rows`` per side. The candidate rows are split into two disjoint halves,
and one reference model is trained on each half with the run's own recipe
(model, epochs, batch size, learning rate — without DP, as an attacker
would), so every candidate has exactly one reference model that never saw it.
Reference runs are kept in ``RUN_DIR/privacy-audit/`` and reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.membership.attacks import MembershipInferenceResult
from trustfm.audit.registry import register_audit

REFERENCE_MODELS = 2


def _reference_run(ctx: AuditContext, texts: list[str], labels: list[str], folder: Path, seed: int) -> Path:
    """Train (or reuse) one reference model on ``texts``/``labels`` with the run's recipe, without DP."""
    import pandas as pd

    from trustfm.config import load_config
    from trustfm.data.io import write_table
    from trustfm.runs import read_json
    from trustfm.train.run import train_run

    run = folder / f"reference-{seed}"
    if (run / "run.json").exists() and read_json(run / "run.json").get("status") == "complete":
        return run
    import shutil

    shutil.rmtree(run, ignore_errors=True)
    data = write_table(pd.DataFrame({"text": texts, "label": labels}, dtype=object), folder / f"reference-{seed}.csv")
    base = ctx.config.model_dump(mode="json")
    config = load_config(None, {
        "seed": seed, "output_dir": str(run), "model": base["model"], "train": base["train"],
        "evaluate.bootstrap_samples": 0,
        "data": {"train": str(data), "format": "csv", "text_column": "text", "label_column": "label",
                 "max_length": ctx.config.data.max_length, "split": {"validation": 0.1, "test": 0.0}},
    })
    return train_run(config, show_progress=False).root


@register_audit("membership", "membership inference: loss threshold and reference-calibrated (LiRA-offline style)",
                results=(MembershipInferenceResult,))
def audit_membership_run(run: str | Path | AuditContext, *, max_rows: int = 500, show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.membership.attacks import (
        MembershipInferenceResult, cross_entropy, log_odds_true_label, score_attack,
    )
    from trustfm.models.predictor import Predictor
    from trustfm.runs import read_json
    from trustfm.train.privacy import default_delta

    ctx = as_context(run, show_progress=show_progress)
    runner, config, data = ctx.predictor, ctx.config, ctx.data
    rng = np.random.default_rng(config.seed)
    outside = [data.test, data.validation] if len(data.test) else [data.validation]
    non_texts = [t for part in outside for t in part.texts]
    non_labels = [y for part in outside for y in part.labels]
    n = min(max_rows, len(non_texts), len(data.train))
    members = rng.permutation(len(data.train))[:n]
    non_members = rng.permutation(len(non_texts))[:n]
    texts = [data.train.texts[i] for i in members] + [non_texts[i] for i in non_members]
    labels = [data.train.labels[i] for i in members] + [non_labels[i] for i in non_members]
    index = {name: i for i, name in enumerate(runner.label_names)}
    y = np.array([index[v] for v in labels])
    is_member = np.arange(2 * n) < n

    proba = runner.predict_proba(texts)
    # two reference models on disjoint halves of the candidates: each row has one that never saw it
    half = rng.permutation(2 * n) % REFERENCE_MODELS
    folder = ctx.paths.root / "privacy-audit"
    folder.mkdir(exist_ok=True)
    reference_phi = np.empty(2 * n)
    for k in range(REFERENCE_MODELS):
        rows = np.flatnonzero(half == k)
        ref = Predictor.from_run(_reference_run(ctx, [texts[i] for i in rows], [labels[i] for i in rows], folder,
                                      seed=config.seed + 1000 + k))
        out_rows = np.flatnonzero(half != k)
        reference_phi[out_rows] = log_odds_true_label(ref.predict_proba([texts[i] for i in out_rows]), y[out_rows])

    privacy = read_json(ctx.paths.result("privacy")) if ctx.paths.result("privacy").exists() else {}
    delta = privacy.get("delta") or default_delta(len(data.train))
    common = dict(delta=delta, **ctx.bootstrap.kwargs())
    loss_score = -cross_entropy(proba, y)
    calibrated = log_odds_true_label(proba, y) - reference_phi
    result = MembershipInferenceResult(
        members=n, non_members=n, reference_models=REFERENCE_MODELS,
        reference_training=f"{REFERENCE_MODELS} models, each on a disjoint half of the {2 * n} candidate rows, "
                           "with the run's recipe and without DP",
        delta=delta, accounted_epsilon=privacy.get("epsilon"),
        attacks=[score_attack("loss_threshold", loss_score[is_member], loss_score[~is_member], **common),
                 score_attack("reference_calibrated", calibrated[is_member], calibrated[~is_member], **common)],
    )
    ctx.save("membership", result)
    return {"membership": result}
