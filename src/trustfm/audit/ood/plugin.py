"""``trustfm audit ood``: fit OOD detectors on the training split, measure them against OOD data.

The Mahalanobis detector is saved next to the model (``model/ood_detector.*``),
with the score threshold that keeps 95% of in-distribution test rows, so the
serving stage can flag inputs that do not look like the training data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.ood.detectors import OODResult
from trustfm.audit.registry import register_audit
from trustfm.errors import ConfigError


def _needs_ood_data(ctx: AuditContext, options: dict) -> str | None:
    if not options.get("ood_data"):
        return "needs out-of-distribution data: run `trustfm audit ood RUN_DIR --ood-data PATH`"
    return ctx.why_no_training_rows("fitting the Mahalanobis detector")


@register_audit("ood", "out-of-distribution detection (max-softmax, energy, Mahalanobis)",
                results=(OODResult,), why_not_applicable=_needs_ood_data, modalities=("text", "image"))
def audit_ood_run(
    run: str | Path | AuditContext, *, ood_data: Path | None = None, ood_text_column: str | None = None,
    max_fit_rows: int = 5000, show_progress: bool = False,
) -> dict[str, object]:
    from trustfm.audit.ood.detectors import MahalanobisDetector, energy_score, max_softmax_score, ood_separation
    from trustfm.data.io import read_table
    from trustfm.data.validate import validate_table

    if ood_data is None:
        raise ConfigError("give --ood-data PATH: texts that are not from the training distribution")
    ctx = as_context(run, show_progress=show_progress)
    runner, config, data = ctx.predictor, ctx.config, ctx.data
    # a model behind an endpoint shows its probabilities only: the confidence detector alone applies to it
    detector = None
    if not runner.black_box:
        reason = ctx.why_no_training_rows("fitting the Mahalanobis detector")
        if reason:
            raise ConfigError(reason)
        rng = np.random.default_rng(config.seed)
        fit_rows = rng.permutation(len(data.train))[:max_fit_rows]
        train_texts = [data.train.texts[i] for i in fit_rows]
        _, train_features = runner.logits_and_embeddings(train_texts)
        detector = MahalanobisDetector().fit(train_features, data.label_ids(data.train)[fit_rows])

    test = ctx.eval_part
    column = ood_text_column or config.data.text_column
    if config.data.modality == "image":  # a folder of images (in class folders) or a table of image paths
        from trustfm.data.prepare import load_labelled

        ood = load_labelled(Path(ood_data), config.data, labelled=False)
    else:
        ood = validate_table(read_table(ood_data, config.data.format), file=str(ood_data), text_column=column,
                             label_column=None, policies=config.data.on_problem)
    scores = {}
    for side, texts in (("in", test.texts), ("out", ood.texts)):
        logits, features = runner.logits_and_embeddings(texts)
        scores[side] = {"max_softmax": max_softmax_score(logits)}
        if detector is not None:
            scores[side].update(energy=energy_score(logits), mahalanobis=detector.score(features))
    result = ood_separation(scores["in"], scores["out"], in_name=f"{test.file} (test split)", out_name=str(ood_data),
                            bootstrap_samples=min(ctx.bootstrap.samples, 500),
                            confidence=ctx.bootstrap.confidence, seed=ctx.bootstrap.seed)
    if detector is not None:
        threshold = next(d.threshold_at_95_tpr for d in result.detectors if d.detector == "mahalanobis")
        detector.save(ctx.paths.model, threshold=threshold)
    ctx.save("ood", result)
    return {"ood": result}
