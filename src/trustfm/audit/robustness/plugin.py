"""``trustfm audit robustness``: the perturbation suite on a run's test split."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.robustness.perturb import PerturbationResult
from trustfm.audit.registry import register_audit


@register_audit("robustness", "perturbation suite: typos, casing, Unicode tricks, names, numbers, negation",
                results=(PerturbationResult,), budget=("max_texts",))
def audit_robustness_run(run: str | Path | AuditContext, *, max_texts: int = 500,
                         show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.robustness.perturb import perturbation_suite

    ctx = as_context(run, show_progress=show_progress)
    predictor = ctx.predictor
    texts, labels, dataset = ctx.sample_eval_texts(max_texts)
    # the directional negation test assumes that negation flips the label: true of sentiment only
    task, known = ctx.task
    result = perturbation_suite(texts, labels, predictor.predict_proba, predictor.label_names, dataset=dataset,
                                directional=task == "sentiment", **ctx.bootstrap.kwargs())
    if task != "sentiment":
        result.skipped["negation"] = (f"not applicable: it assumes sentiment labels (negation flips the label); "
                                      f"this run's task is {task or 'unknown'}, {known}")
    screen = ctx.example_screen()
    for test in result.tests:
        test.worst = screen.select(test.worst, lambda e: (e.original, e.perturbed))
    result.examples_withheld_for_pii = screen.withheld
    ctx.save("robustness", result)
    return {"robustness": result}
