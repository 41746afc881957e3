"""The main job, top-down: each stage's verb on one run folder, in order.

Stages live in their own layers (``train``, ``audit``, ``report``); this module
only composes them for the commands that run several in a row.
"""

from __future__ import annotations

from pathlib import Path

from trustfm.config import RunConfig
from trustfm.runs import RunPaths


def train_and_evaluate(config: RunConfig, *, resume: bool = False, show_progress: bool = True) -> RunPaths | None:
    """Fine-tune (:func:`~trustfm.train.run.train_run`), evaluate the best model on the test split
    (``results/performance.json``) and save the reference profile monitoring compares production with
    (``monitoring/reference.json``); returns the run's paths (None in a torchrun process other than rank 0)."""
    from trustfm.train.distributed import train_every_rank, world
    from trustfm.train.run import train_run

    if world().size > 1:  # under torchrun: every process trains, rank 0 alone evaluates (the others return None)
        if resume:
            from trustfm.errors import ConfigError

            raise ConfigError("--resume continues a run in one process: run it without --nproc / torchrun")
        paths = train_every_rank(config, show_progress=show_progress)
        return None if paths is None else _evaluate_trained(paths, show_progress=show_progress)
    paths = train_run(config, resume=resume, show_progress=show_progress)
    return _evaluate_trained(paths, show_progress=show_progress)


def import_and_evaluate(model_dir: Path, config: RunConfig, *, allow_pickle: bool = False,
                        show_progress: bool = True) -> RunPaths:
    """A checkpoint trained elsewhere as a run folder (:func:`~trustfm.train.importing.import_checkpoint`),
    evaluated on its test file, with the monitoring reference saved: from here on it is audited like any run."""
    from trustfm.train.importing import import_checkpoint

    root = import_checkpoint(model_dir, config, allow_pickle=allow_pickle)
    return _evaluate_trained(RunPaths(root), show_progress=show_progress)


def import_endpoint_and_evaluate(spec, config: RunConfig, *, show_progress: bool = True) -> RunPaths:
    """A classifier behind an HTTP endpoint as a run folder (:func:`~trustfm.train.importing.import_endpoint`),
    evaluated on its test file through its answers."""
    from trustfm.train.importing import import_endpoint

    root = import_endpoint(spec, config)
    return _evaluate_trained(RunPaths(root), show_progress=show_progress)


def _evaluate_trained(paths: RunPaths, *, show_progress: bool) -> RunPaths:
    """After training: the test-split evaluation and the monitoring reference, from one context (one model load
    and data preparation for both)."""
    from trustfm.audit.context import AuditContext
    from trustfm.audit.performance.plugin import evaluate_run
    from trustfm.monitor.reference import build_reference

    ctx = AuditContext(paths.root, show_progress=show_progress)
    evaluate_run(ctx, show_progress=show_progress)
    build_reference(ctx)
    return paths


# what the demo asks of each audit: the defaults' budgets cut to keep the whole tour under three minutes
DEMO_AUDIT_BUDGETS = {
    "attacks": {"max_texts": 60},
    "robustness": {"max_texts": 150},
    "explanations": {"faithfulness_texts": 8, "global_texts": 40},
    "membership": {"max_rows": 120},
}


def demo_flow(output_dir: Path, *, epochs: int | None = None, max_examples: int | None = None,
              show_progress: bool = True) -> dict:
    """The product tour on the embedded demo set and the default model, as a user would run it.

    1. train a baseline and evaluate it; 2. run every audit that applies on it; 3. train again with
    Kamiran–Calders re-weighting (the mitigation for the planted gender bias); 4. audit the mitigated run's
    fairness against the baseline; 5. write both reports; 6. check both against the demo release policy.
    Returns what to look at: run folders, report paths, the fairness before/after and the gate outcomes.
    ``max_examples`` caps every audit's examples below the tour's own budgets (a quicker tour).
    """
    from importlib import resources

    from trustfm.audit.fairness.plugin import audit_fairness_run
    from trustfm.audit.run_all import run_all_audits
    from trustfm.config import load_config
    from trustfm.report import build_report
    from trustfm.report.policy import gate_run

    demo = resources.files("trustfm.data") / "demo"
    runs = {"baseline": Path(output_dir) / "baseline", "mitigated": Path(output_dir) / "mitigated"}
    mitigation = {"baseline": {}, "mitigated": {"fairness.mitigation": "reweigh"}}
    summary: dict = {"runs": {}, "gate": {}}
    with resources.as_file(demo / "demo.yaml") as config_path, resources.as_file(demo / "policy.yaml") as policy:
        for name, run_dir in runs.items():
            overrides = {"output_dir": str(run_dir), **mitigation[name]}
            if epochs is not None:
                overrides["train.epochs"] = epochs
            train_and_evaluate(load_config(config_path, overrides), show_progress=show_progress)
            if name == "baseline":
                budgets = DEMO_AUDIT_BUDGETS if max_examples is None else {
                    audit: {k: min(v, max_examples) for k, v in options.items()}
                    for audit, options in DEMO_AUDIT_BUDGETS.items()}
                run_all_audits(run_dir, options=budgets, max_examples=max_examples, show_progress=show_progress)
            else:
                written = audit_fairness_run(run_dir, compare=runs["baseline"], show_progress=show_progress)
                summary["fairness_comparison"] = written["fairness-comparison"].model_dump(mode="json")
            summary["gate"][name] = gate_run(run_dir, policy).model_dump(mode="json")
            html, _ = build_report(run_dir)  # after the gate, so the report shows its outcome
            summary["runs"][name] = {"run_dir": str(run_dir), "report": str(html)}
    return summary


def federate_and_evaluate(config: RunConfig, *, superlink: str | None = None, show_progress: bool = True) -> RunPaths:
    """Federated fine-tuning (:func:`~trustfm.federated.run.federate_run`), then what ``train`` does after
    training: the test-split evaluation and the monitoring reference profile, on the final global model."""
    from trustfm.federated.run import federate_run

    return _evaluate_trained(federate_run(config, superlink=superlink, show_progress=show_progress),
                             show_progress=show_progress)



def tune_and_select(config: RunConfig, *, resume: bool = False, select: str | None = None,
                    show_progress: bool = True, on_trial=None):
    """Run or resume the search (:func:`~trustfm.tune.study.tune_study`); then, with a selection rule (``select``,
    else ``tune.select``), copy the chosen trial to the study's output run ``OUTPUT_DIR/selected`` and do what
    ``train`` does after training: the test-split evaluation and the monitoring reference. Returns the study's
    :class:`~trustfm.tune.result.TuneResult` (``chosen`` set when a trial was selected)."""
    from trustfm.runs import RunPaths
    from trustfm.tune.objectives import parse_constraints, parse_selection
    from trustfm.tune.select import choose_trial, make_output_run
    from trustfm.tune.study import tune_study, write_study_result

    rule = select or (config.tune.select if config.tune is not None else None)
    selection = parse_selection(rule) if rule else None  # a bad rule fails before any trial
    result = tune_study(config, resume=resume, show_progress=show_progress, on_trial=on_trial)
    if selection is not None:
        chosen = choose_trial(result, selection, parse_constraints(config.tune.constraints))
        result.chosen = make_output_run(result, chosen, selection)
        _evaluate_trained(RunPaths(Path(result.chosen.run_dir)), show_progress=show_progress)
        write_study_result(result.study_dir, result)
    return result
