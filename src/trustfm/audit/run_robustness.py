"""``trustfm audit robustness``: the perturbation suite on a run's test split."""

from __future__ import annotations

from pathlib import Path


from trustfm.audit.registry import register_audit


@register_audit("robustness", "perturbation suite: typos, casing, Unicode tricks, names, numbers, negation")
def audit_robustness_run(run_dir: str | Path, *, max_texts: int = 500, show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.perturb import perturbation_suite
    from trustfm.pipeline import RunModel, sample_test_texts
    from trustfm.runs import write_json_atomic

    runner = RunModel(run_dir)
    config = runner.config
    texts, labels, dataset = sample_test_texts(runner, max_texts)
    result = perturbation_suite(
        texts, labels, runner.predict_proba, runner.label_names, dataset=dataset,
        bootstrap_samples=config.evaluate.bootstrap_samples, confidence=config.evaluate.confidence, seed=config.seed,
    )
    screen = runner.example_screen()
    for test in result.tests:
        test.worst = screen.select(test.worst, lambda e: (e.original, e.perturbed))
    result.examples_withheld_for_pii = screen.withheld
    write_json_atomic(runner.paths.result("robustness"), result.model_dump(mode="json"))
    return {"robustness": result}
