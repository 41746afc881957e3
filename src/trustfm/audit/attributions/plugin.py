"""``trustfm audit attributions``: Captum pixel attributions of a run's evaluation images, checked by deletion."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.attributions.methods import BASELINES, METHODS, AttributionResult
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.registry import register_audit


def _needs_torch_model(ctx: AuditContext, options: dict) -> str | None:
    return ctx.why_not_differentiable("gradient attributions need the float torch model",
                                      "explain its torch parent instead")


@register_audit("attributions", "pixel attributions (integrated gradients, saliency) with deletion faithfulness",
                results=(AttributionResult,), why_not_applicable=_needs_torch_model, modalities=("image",), budget=("max_images",))
def audit_attributions_run(run: str | Path | AuditContext, *, max_images: int = 64,
                           methods: tuple[str, ...] = METHODS, examples: int = 4, deletion_baseline: str = "median",
                           show_progress: bool = False) -> dict[str, object]:
    """Up to ``max_images`` evaluation images (a seeded sample); ``examples`` of them shown with their maps;
    deleted pixels take ``deletion_baseline`` (``median``: the images' median colour, or ``black``)."""
    from trustfm.audit.attributions.methods import attribution_audit
    from trustfm.errors import ConfigError

    ctx = as_context(run, show_progress=show_progress)
    reason = _needs_torch_model(ctx, {})
    if reason:
        raise ConfigError(reason)
    if deletion_baseline not in BASELINES:
        raise ConfigError(f"unknown deletion baseline {deletion_baseline!r}: choose from {', '.join(BASELINES)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown attribution method {unknown}: choose from {', '.join(METHODS)}")
    predictor = ctx.predictor
    paths, labels, dataset = ctx.sample_eval_texts(max_images)
    result = attribution_audit(predictor.model, predictor.inputs.encode(paths).pixels, labels, predictor.label_names,
                               dataset=dataset, bootstrap=ctx.bootstrap, seed=ctx.config.seed,
                               methods=tuple(methods), examples=examples, baseline=deletion_baseline)
    ctx.save("attributions", result)
    return {"attributions": result}
