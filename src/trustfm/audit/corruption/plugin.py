"""``trustfm audit corruption``: common corruptions at five severities on a run's evaluation images."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.corruption.corruptions import CORRUPTIONS, CorruptionResult
from trustfm.audit.registry import register_audit


@register_audit("corruption", "image corruptions (noise, blur, JPEG, brightness) at five severities, ImageNet-C style",
                results=(CorruptionResult,), modalities=("image",), budget=("max_images",))
def audit_corruption_run(run: str | Path | AuditContext, *, max_images: int = 500,
                         corruptions: tuple[str, ...] = tuple(CORRUPTIONS), examples: int = 2,
                         show_progress: bool = False) -> dict[str, object]:
    """Up to ``max_images`` evaluation images (a seeded sample); ``examples`` images per corruption are kept in the
    result for the report (0: none, for images that must not leave the data)."""
    from trustfm.audit.corruption.corruptions import corruption_suite

    ctx = as_context(run, show_progress=show_progress)
    predictor = ctx.predictor
    paths, labels, dataset = ctx.sample_eval_texts(max_images)
    images = predictor.inputs.encode(paths).pixels
    result = corruption_suite(images, labels, predictor.predict_proba, predictor.label_names, dataset=dataset,
                              bootstrap=ctx.bootstrap, seed=ctx.config.seed, corruptions=tuple(corruptions),
                              examples=examples)
    ctx.save("corruption", result)
    return {"corruption": result}
