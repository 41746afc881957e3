"""One flat namespace of audit numbers, for policies and dashboards.

Every result file of a run contributes dotted names, for example::

    accuracy                                   (alias of performance.accuracy)
    performance.macro_f1  performance.macro_f1.low
    fairness.group.demographic_parity_difference
    fairness.eec-style.gender.demographic_parity_difference
    fairness.eec-style.gender.female.selection_rate
    counterfactual.gender.flip_rate
    representation.flagged
    explanations.integrated_gradients.comprehensiveness

The prefix comes from the file name; the rest from the result model's own
``metrics()`` (:class:`trustfm.results.Result`), chosen by the file's ``kind``.
A new audit's numbers appear here as soon as its result model defines them.
"""

from __future__ import annotations

from pathlib import Path

from trustfm.results import Result, load_result, parse_result, result_models


def known_result_models() -> dict[str, type[Result]]:
    """Every result kind trustfm writes, by kind: the stages that define them are imported first."""
    import trustfm.audit.run_all  # noqa: F401  (audit summary)
    import trustfm.compress.compare  # noqa: F401  (compression comparison)
    import trustfm.serve.extraction  # noqa: F401  (model extraction)
    import trustfm.monitor.run  # noqa: F401  (production monitoring)
    import trustfm.federated.poisoning  # noqa: F401  (poisoned clients under each rule)
    import trustfm.federated.result  # noqa: F401  (federated training)
    import trustfm.tune.result  # noqa: F401  (hyper-parameter search)
    import trustfm.data.redaction  # noqa: F401  (pii)
    import trustfm.report.policy  # noqa: F401  (gate)
    import trustfm.train.privacy  # noqa: F401  (DP accounting)
    from trustfm.audit.registry import registered_audits

    registered_audits()  # importing each audit defines the result models it declares
    return result_models()


def read_results(results_dir: str | Path, *, exclude: tuple[str, ...] = ()) -> dict[str, Result]:
    """The typed results in a run's ``results/`` folder, by file stem (``fairness-eec-style``, ...)."""
    known_result_models()
    return {p.stem: load_result(p) for p in sorted(Path(results_dir).glob("*.json")) if p.stem not in exclude}


def parse_results(documents: dict[str, dict]) -> dict[str, Result]:
    """Typed results of already-read JSON documents, by file stem."""
    known_result_models()
    return {name: parse_result(doc, source=f"results/{name}.json") for name, doc in documents.items()}
