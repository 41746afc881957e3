"""``trustfm audit adversarial``: white-box FGSM and PGD on a run's evaluation images."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.adversarial.attacks import DEFAULT_EPSILONS, AdversarialResult
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.registry import register_audit


def _needs_torch_model(ctx: AuditContext, options: dict) -> str | None:
    return ctx.why_not_differentiable("white-box attacks need the model's gradients",
                                      "attack its torch parent instead")


@register_audit("adversarial", "white-box FGSM and PGD at stated L-infinity radii (image models)",
                results=(AdversarialResult,), why_not_applicable=_needs_torch_model, modalities=("image",), budget=("max_images",))
def audit_adversarial_run(run: str | Path | AuditContext, *, max_images: int = 200,
                          epsilons: tuple[float, ...] = DEFAULT_EPSILONS, pgd_steps: int = 10, examples: int = 2,
                          show_progress: bool = False) -> dict[str, object]:
    """Up to ``max_images`` evaluation images (a seeded sample) at each radius in ``epsilons`` (pixel units)."""
    from trustfm.audit.adversarial.attacks import attack_suite
    from trustfm.errors import ConfigError

    ctx = as_context(run, show_progress=show_progress)
    reason = _needs_torch_model(ctx, {})
    if reason:
        raise ConfigError(reason)
    if not epsilons or any(not 0 < e <= 1 for e in epsilons):
        raise ConfigError(f"epsilons must be radii in (0, 1] pixel units (8/255 = 0.0314), not {list(epsilons)}")
    predictor = ctx.predictor
    paths, labels, dataset = ctx.sample_eval_texts(max_images)
    result = attack_suite(predictor.model, predictor.inputs.encode(paths).pixels, labels, predictor.label_names,
                          dataset=dataset, bootstrap=ctx.bootstrap, seed=ctx.config.seed,
                          epsilons=tuple(sorted(epsilons)), pgd_steps=pgd_steps, examples=examples)
    ctx.save("adversarial", result)
    return {"adversarial": result}
