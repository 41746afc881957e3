"""The data quality audit (`trustfm audit RUN --all`): label issues, duplicates and test leakage in a run's own data.

The same findings as ``trustfm data check``, on the rows the run trained and
was tested on (after its validation policies and redaction), and recorded in
the run folder so the report, the gate and the model card carry them. Rows are
named by their file row numbers; no text is copied into the result.

Embeddings come from the run's *pretrained* encoder, not the fine-tuned one: a
model fine-tuned on the labels has learned them, so out-of-fold predictions on
its features would agree with the very label errors this looks for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.data_quality.issues import DuplicatePair, LabelIssue
from trustfm.audit.registry import register_audit
from trustfm.results import Result

SHOWN = 20  # label issues and leaks listed in the result (all are counted)


class DataQualityResult(Result):
    """``results/data_quality.json``: counts over the training split, and the worst rows by file row number."""

    kind: Literal["data_quality"] = "data_quality"
    dataset: str
    rows: int  # training rows examined
    label_issues: int  # rows whose given label the out-of-fold model finds unlikely (cleanlab's self-confidence rule)
    label_issue_share: float  # label_issues / rows, in [0, 1]
    duplicates: int  # training rows that repeat an earlier one (exact, normalised or near)
    leakage: int  # test rows that repeat a training row (exact, normalised or near)
    out_of_fold_accuracy: float | None  # how far the out-of-fold model itself can be trusted
    near_threshold: float  # cosine similarity at or above which two rows are near duplicates
    worst_label_issues: list[LabelIssue]  # lowest self-confidence first, at most SHOWN
    leaks: list[DuplicatePair]  # at most SHOWN


@register_audit("data_quality", "label issues, duplicates and train/test leakage in the run's data (rows, never texts)",
                results=(DataQualityResult,), modalities=("text", "image"),
                why_not_applicable=lambda ctx, options: (
                    ctx.why_black_box("the data-quality audit embeds texts with the model's own encoder")
                    or ctx.why_no_training_rows("the data-quality audit")), budget=("max_rows",))
def audit_data_quality_run(run: str | Path | AuditContext, *, max_rows: int = 5000, near_threshold: float = 0.97,
                           show_progress: bool = False) -> dict[str, object]:
    """Find label issues and duplicates in up to ``max_rows`` training rows (a seeded sample) and leaks from the
    evaluation split into them."""
    from trustfm.audit.data_quality.issues import find_issues, pretrained_features

    ctx = as_context(run, show_progress=show_progress)
    data, config = ctx.data, ctx.config
    train, test = data.train, ctx.eval_part
    keep = np.sort(np.random.default_rng(config.seed).permutation(len(train))[:max_rows])
    texts = [train.texts[i] for i in keep]
    features_of = pretrained_features(config)
    findings = find_issues(
        texts, [train.labels[i] for i in keep], np.asarray(train.rows)[keep], features_of(texts), data.label_names,
        test_texts=test.texts, test_rows=np.asarray(test.rows), test_features=features_of(test.texts),
        near_threshold=near_threshold, seed=config.seed,
    )
    result = DataQualityResult(
        dataset=f"{train.file} (train split, {len(keep)} of {len(train)} rows; leakage from {test.file})",
        rows=findings.rows, label_issues=len(findings.label_issues),
        label_issue_share=len(findings.label_issues) / max(findings.rows, 1), duplicates=len(findings.duplicates),
        leakage=len(findings.leakage), out_of_fold_accuracy=findings.out_of_fold_accuracy,
        near_threshold=near_threshold,
        worst_label_issues=sorted(findings.label_issues, key=lambda issue: issue.self_confidence)[:SHOWN],
        leaks=findings.leakage[:SHOWN],
    )
    ctx.save("data_quality", result)
    return {"data_quality": result}
