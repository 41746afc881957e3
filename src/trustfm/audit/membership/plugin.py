"""``trustfm audit membership``: membership inference against a run, with reference models for calibration.

Members are training rows of the run. Non-members must come from the same
distribution, or the attack measures distribution shift instead of memorisation:
they are rows of the training file that training never saw, split off before
training — the ``data.split.holdout`` share, else the validation and test
splits carved from the training file. A run whose validation and test rows come
from other files has none: the audit is not applicable until it is retrained
with ``data.split.holdout``. Non-members that repeat a training row (exact text,
or equal after lower-casing and dropping all but letters and digits) are
removed, and counted. Equal numbers of each side, at most ``max_rows``.

The candidate rows are split into two disjoint halves, and one reference model
is trained on each half with the run's own recipe (model, epochs, batch size,
learning rate — without DP, as an attacker would), so every candidate has
exactly one reference model that never saw it. They train in a temporary folder
(their training file holds raw text) and are deleted after scoring, unless
``keep_reference_models`` moves them, without that file, to
``RUN_DIR/privacy-audit/``; the result records their size either way.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.membership.attacks import MembershipInferenceResult
from trustfm.audit.registry import register_audit

REFERENCE_MODELS = 2


def non_member_source(ctx: AuditContext) -> tuple[list[str], list[str], str] | None:
    """Texts, labels and a description of rows from the training file that training never saw; None if none."""
    data, config = ctx.data, ctx.config.data
    if data.holdout is not None and len(data.holdout):
        part = data.holdout
        return part.texts, part.labels, (f"the held-out {config.split.holdout:.0%} of {config.train} "
                                         "(data.split.holdout), split off before training")
    carved = [(role, getattr(data, role)) for role in ("validation", "test")
              if getattr(config, role) is None and len(getattr(data, role))]
    if not carved:
        return None
    texts = [t for _, part in carved for t in part.texts]
    labels = [y for _, part in carved for y in part.labels]
    roles = " and ".join(role for role, _ in carved)
    return texts, labels, f"the {roles} rows carved from {config.train} before training"


NO_NON_MEMBERS = ("non-members must come from the training file's distribution, and this run's validation and test "
                  "rows come from other files: retrain with data.split.holdout (e.g. 0.05)")


def _why_not(ctx: AuditContext, options: dict) -> str | None:
    return (ctx.why_black_box("the reference-calibrated attack trains reference models with the model's recipe")
            or ctx.why_no_training_rows("membership inference")
            or (NO_NON_MEMBERS if non_member_source(ctx) is None else None))


def _dedupe(texts: list[str], labels: list[str], train_texts: list[str]) -> tuple[list[str], list[str], dict]:
    """Drop candidate non-members that repeat a training text (exact or normalised); count each kind."""
    from trustfm.data.validate import normalise_text

    exact = set(train_texts)
    normalised = {normalise_text(t) for t in train_texts}
    kept_texts, kept_labels, removed = [], [], {"exact": 0, "normalised": 0}
    for text, label in zip(texts, labels):
        if text in exact:
            removed["exact"] += 1
        elif (key := normalise_text(text)) and key in normalised:
            removed["normalised"] += 1
        else:
            kept_texts.append(text)
            kept_labels.append(label)
    return kept_texts, kept_labels, removed


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _train_reference(ctx: AuditContext, texts: list[str], labels: list[str], workdir: Path, seed: int) -> Path:
    """Train one reference model on ``texts``/``labels`` with the run's recipe, without DP, under ``workdir``."""
    import pandas as pd

    from trustfm.config import load_config
    from trustfm.data.io import write_table
    from trustfm.train.run import train_run

    base = ctx.config.model_dump(mode="json")
    if ctx.config.data.modality == "image":
        # the rows are resolved image paths: the reference table names them under their common folder
        import os

        column, inputs = "image", {"modality": "image", "image": {**base["data"]["image"], "column": "image",
                                                                  "root": os.path.commonpath(texts)}}
    else:
        column, inputs = "text", {"text_column": "text", "max_length": ctx.config.data.max_length}
    data = write_table(pd.DataFrame({column: texts, "label": labels}, dtype=object), workdir / f"train-{seed}.csv")
    config = load_config(None, {
        "seed": seed, "output_dir": str(workdir / f"reference-{seed}"), "model": base["model"], "train": base["train"],
        "evaluate.bootstrap_samples": 0,
        "data": {"train": str(data), "format": "csv", "label_column": "label", **inputs, "min_class_rows": 1,
                 "split": {"validation": 0.1, "test": 0.0}},
    })
    return train_run(config, show_progress=False).root


@register_audit("membership", "membership inference: loss threshold and reference-calibrated (LiRA-offline style)",
                results=(MembershipInferenceResult,), why_not_applicable=_why_not, modalities=("text", "image"), budget=("max_rows",))
def audit_membership_run(run: str | Path | AuditContext, *, max_rows: int = 500, keep_reference_models: bool = False,
                         show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.membership.attacks import cross_entropy, log_odds_true_label, score_attack
    from trustfm.errors import ConfigError
    from trustfm.models.predictor import Predictor
    from trustfm.runs import read_json
    from trustfm.train.privacy import default_delta

    ctx = as_context(run, show_progress=show_progress)
    source = non_member_source(ctx)
    if source is None:
        raise ConfigError(f"membership audit: {NO_NON_MEMBERS}")
    runner, config, data = ctx.predictor, ctx.config, ctx.data
    rng = np.random.default_rng(config.seed)
    source_texts, source_labels, non_members_from = source
    non_texts, non_labels, removed = _dedupe(source_texts, source_labels, data.train.texts)
    if max_rows < 10:
        raise ConfigError(f"membership audit: max_rows {max_rows} is below the 10 members and 10 non-members an "
                          "attack needs")
    n = min(max_rows, len(non_texts), len(data.train))
    if n < 10:
        raise ConfigError(f"membership audit: only {n} non-member rows after removing duplicates of training rows "
                          "(raise data.split.holdout and retrain)")
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
    reference_phi = np.empty(2 * n)
    kept_folder = ctx.paths.root / "privacy-audit"
    reference_bytes = 0
    with tempfile.TemporaryDirectory(prefix="trustfm-membership-") as workdir:
        for k in range(REFERENCE_MODELS):
            rows = np.flatnonzero(half == k)
            seed = config.seed + 1000 + k
            ref_run = _train_reference(ctx, [texts[i] for i in rows], [labels[i] for i in rows], Path(workdir), seed)
            ref = Predictor.from_run(ref_run)
            out_rows = np.flatnonzero(half != k)
            reference_phi[out_rows] = log_odds_true_label(ref.predict_proba([texts[i] for i in out_rows]), y[out_rows])
            reference_bytes += _folder_bytes(ref_run)
            if keep_reference_models:
                target = kept_folder / ref_run.name
                shutil.rmtree(target, ignore_errors=True)
                kept_folder.mkdir(parents=True, exist_ok=True)
                shutil.move(str(ref_run), str(target))
    privacy = read_json(ctx.paths.result("privacy")) if ctx.paths.result("privacy").exists() else {}
    delta = privacy.get("delta") or default_delta(len(data.train))
    common = dict(delta=delta, **ctx.bootstrap.kwargs())
    loss_score = -cross_entropy(proba, y)
    calibrated = log_odds_true_label(proba, y) - reference_phi
    result = MembershipInferenceResult(
        members=n, non_members=n, reference_models=REFERENCE_MODELS,
        reference_training=f"{REFERENCE_MODELS} models, each on a disjoint half of the {2 * n} candidate rows, "
                           "with the run's recipe and without DP",
        members_from=f"the training split of {config.data.train}",
        non_members_from=non_members_from, non_member_duplicates_removed=removed,
        reference_models_kept=keep_reference_models, reference_models_bytes=reference_bytes,
        delta=delta, accounted_epsilon=privacy.get("epsilon"),
        attacks=[score_attack("loss_threshold", loss_score[is_member], loss_score[~is_member], **common),
                 score_attack("reference_calibrated", calibrated[is_member], calibrated[~is_member], **common)],
    )
    ctx.save("membership", result)
    return {"membership": result}
