"""``trustfm audit fairness``: the fairness audits on a run folder.

Glue only: load the run's model once, predict, hand labels/probabilities/groups
to the pure audit functions, write their typed results to ``results/``.

Writes, as applicable:
- ``fairness.json``: group audit of the test split on the sensitive columns;
- ``representation.json``: groups and label balance in the training split;
- ``counterfactual.json``: identity-term substitution on the test texts;
- ``fairness-<probe>.json``: group audit on a probe set, per probe group column;
- ``fairness-threshold_optimizer.json``: Fairlearn ThresholdOptimizer fitted on
  the validation split, before/after on the test split;
- ``fairness-comparison.json``: this run against a baseline run (``compare``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from trustfm._deps import optional_import
from trustfm.audit.fairness.comparison import MitigationComparison
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.fairness.counterfactual import CounterfactualResult
from trustfm.audit.fairness.group import FairnessResult
from trustfm.audit.registry import register_audit
from trustfm.audit.fairness.representation import RepresentationResult
from trustfm.errors import ConfigError
from trustfm.runs import read_json

log = logging.getLogger("trustfm.audit")


IDENTITY_MENTION = "identity_mention"


def identity_mentions(texts: Sequence[str]) -> list[str]:
    """Per text, the first identity axis (in the term lists' order) it mentions, or 'none'."""
    from trustfm.data.identity_terms import IdentityTerms

    terms = IdentityTerms.default()
    out = []
    for text in texts:
        out.append(next((axis for axis, spec in terms.axes.items() if spec.pattern.search(text)), "none"))
    return out


def positive_class_ids(label_names: Sequence[str], positive: str | None) -> list[int] | None:
    """Model classes that count as positive: a name, a comma list of names, a binary task's second class, or
    None for a task of more than two classes with none named (audited one-vs-rest, no class singled out)."""
    if positive is None:
        return [1] if len(label_names) == 2 else None
    wanted = [p.strip() for p in str(positive).split(",") if p.strip()]
    unknown = [p for p in wanted if p not in label_names]
    if unknown:
        raise ConfigError(f"positive label(s) {unknown} are not classes of this model: {list(label_names)}")
    return [list(label_names).index(p) for p in wanted]


def probe_fit(probe_set, ctx: AuditContext, *, mapped: bool, assume_task: str | None = None) -> None:
    """Refuse a probe whose labels mean something else than the run's (a sentiment probe on a hate model).

    Runs when the probe's task fits the run's (declared, read from its label names, or stated for this audit
    with ``assume_task``), or, for a binary run whose task is unknown, when the user mapped the model's positive
    class onto the probe's positive label (``--positive-label``). A model of more than two classes whose task is
    unknown is not mapped onto a probe's two labels by ``--positive-label`` alone ("sadness" is not a negative
    sentiment): that needs ``--assume-task``.
    """
    from trustfm.audit.context import COMPATIBLE_TASKS
    from trustfm.errors import ConfigError

    if probe_set.task is None:
        return
    task, known = ctx.task
    if assume_task is not None:
        task, known = assume_task, "assumed for this audit (--assume-task)"
    if task is None and mapped and len(ctx.label_names) == 2:
        return
    if task is None or probe_set.task not in COMPATIBLE_TASKS.get(task, {task}):
        hint = ""
        if task is None:
            hint = (". Declare the task when training (--task), or map the labels with --positive-label"
                    if len(ctx.label_names) == 2 else
                    f". This model has {len(ctx.label_names)} classes and no declared task: if it really is a "
                    f"{probe_set.task} model, say so with --assume-task {probe_set.task} and --positive-label")
        raise ConfigError(
            f"probe {probe_set.name} is not applicable to this run: its labels are {probe_set.task} "
            f"('{probe_set.positive_label}'), and this run's task is {task or 'unknown'}, {known}{hint}")


def binary_predictions(proba: np.ndarray, positive_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted positive (n,) bool, P(positive) (n,)) for a model whose positive class may be several."""
    predicted = np.isin(proba.argmax(axis=1), positive_ids)
    return predicted, proba[:, positive_ids].sum(axis=1)


@register_audit("fairness", "group fairness (sensitive columns or identity mentions), counterfactual substitution, representation",
                results=(FairnessResult, CounterfactualResult, RepresentationResult, MitigationComparison),
                modalities=("text", "image"))
def audit_fairness_run(
    run: str | Path | AuditContext,
    *,
    sensitive: Sequence[str] = (),
    probe: str | None = None,
    probe_data: Path | None = None,
    probe_positive: str | None = None,
    positive_label: str | None = None,
    postprocess: str | None = None,
    constraint: str = "demographic_parity",
    compare: Path | None = None,
    assume_task: str | None = None,
    show_progress: bool = False,
) -> dict[str, object]:
    """Run the fairness audits that apply and write their results; returns them by file name."""
    from trustfm.audit.fairness.counterfactual import counterfactual_audit
    from trustfm.audit.fairness.group import group_fairness
    from trustfm.audit.fairness.representation import representation_check
    ctx = as_context(run, show_progress=show_progress)
    runner, config, paths = ctx.predictor, ctx.config, ctx.paths
    names = runner.label_names
    fair = config.fairness
    positive = positive_label or fair.positive_label
    positive_ids = positive_class_ids(names, positive)  # None: one-vs-rest over every class
    positive_name = None if positive_ids is None else ",".join(names[i] for i in positive_ids)
    written: dict[str, object] = {}

    def save(name: str, result) -> None:
        ctx.save(name, result)
        written[name] = result

    images = config.data.modality == "image"
    if probe is not None and images:
        raise ConfigError("fairness probes are sets of texts; an image model is audited on its sensitive columns")
    if probe is not None:
        from trustfm.data.probes import load_probe

        probe_set = load_probe(probe, data_dir=probe_data, positive_label=probe_positive)
        probe_fit(probe_set, ctx, mapped=positive_label is not None, assume_task=assume_task)
        if positive_ids is None:
            raise ConfigError(f"probe {probe_set.name} has two labels and this model {len(names)} classes: name the "
                              f"model class(es) that mean '{probe_set.positive_label}' with --positive-label")
        proba = runner.predict_proba(probe_set.texts, show_progress=show_progress)
        predicted, _ = binary_predictions(proba, positive_ids)
        truth = np.array([label == probe_set.positive_label for label in probe_set.labels])
        binary_names = [f"not {probe_set.positive_label}", probe_set.positive_label]
        result = group_fairness(
            truth.astype(int), predicted.astype(int), probe_set.groups, binary_names,
            positive_label=probe_set.positive_label, dataset=f"probe {probe_set.name} ({len(probe_set)} texts; "
            f"model positive = {positive_name})", intersections=False, descriptive=probe_set.descriptive,
            min_group_size=fair.min_group_size, **ctx.bootstrap.kwargs(),
        )
        save(f"fairness-{probe_set.name}", result)
        if postprocess == "threshold_optimizer":
            _, score = binary_predictions(proba, positive_ids)
            save(f"fairness-{probe_set.name}-threshold_optimizer",
                 _probe_threshold_optimizer(probe_set, truth, predicted, score, ctx, constraint))
        if compare is not None:
            _compare_with_baseline(compare, result, f"fairness-{probe_set.name}", paths, save)
        return written

    columns = list(dict.fromkeys([*sensitive, *fair.sensitive])) or list(config.data.group_columns)
    data = ctx.data_with_groups(columns)
    if not columns and images:
        raise ConfigError("no sensitive column to group images by: set data.group_columns (and fairness.sensitive) "
                          "when training, or give --sensitive COLUMN")
    if not columns:
        # no sensitive column in the data: group texts by the identity axis they mention
        # (Dixon et al., 2018), which is what identity-term bias in text models hangs on
        # (on copies: the context's data is shared with the other audits and stays as the run prepared it)
        data = dataclasses.replace(data, **{
            split: dataclasses.replace(part, groups={**part.groups, IDENTITY_MENTION: identity_mentions(part.texts)})
            for split, part in (("train", data.train), ("validation", data.validation), ("test", data.test))})
        columns = [IDENTITY_MENTION]
        log.info("no sensitive columns: grouping texts by the identity axis they mention (%s)", IDENTITY_MENTION)
    test = ctx.eval_part_of(data)
    proba = runner.predict_proba(test.texts, show_progress=show_progress)
    y_true = data.label_ids(test)
    y_pred = proba.argmax(axis=1)
    audit_names = names
    if positive_ids is not None and len(positive_ids) > 1:
        # several classes count as positive (e.g. hate and offensive): audit the binary framing
        y_true, y_pred = np.isin(y_true, positive_ids).astype(int), np.isin(y_pred, positive_ids).astype(int)
        audit_names = [f"not {positive_name}", positive_name]
    result = group_fairness(
        y_true, y_pred, {c: test.groups[c] for c in columns}, audit_names, positive_label=positive_name,
        dataset=f"{test.file} (test split)", min_group_size=fair.min_group_size, **ctx.bootstrap.kwargs(),
    )
    save("fairness", result)
    if len(data.train):  # an imported model may come without its training rows
        save("representation", representation_check(
            data.train.labels, {c: data.train.groups[c] for c in columns}, names,
            dataset=f"{data.train.file} (train split)", min_count=fair.min_group_size, min_share=fair.min_group_share,
        ))
    if postprocess == "threshold_optimizer":
        if positive_ids is None:
            raise ConfigError("threshold_optimizer post-processing needs a binary classifier (or --positive-label)")
        save("fairness-threshold_optimizer", _threshold_optimizer(ctx, data, columns, result, proba, positive_ids,
                                                                   constraint, show_progress))
    if compare is not None:
        _compare_with_baseline(compare, result, "fairness", paths, save)
    if images:  # identity-term substitution rewrites texts; an image has none
        return written
    counterfactual = counterfactual_audit(
        test.texts, runner.predict_proba, names, positive_label=positive_name, dataset=f"{test.file} (test split)",
        **ctx.bootstrap.kwargs(),
    )
    screen = ctx.example_screen()
    for axis in counterfactual.axes:
        axis.worst_pairs = screen.select(axis.worst_pairs, lambda p: (p.original, p.counterfactual))
    counterfactual.examples_withheld_for_pii = screen.withheld
    save("counterfactual", counterfactual)
    return written


def _fit_thresholds(fit_score, fit_y, fit_groups, apply_score, apply_groups, *, constraint: str, seed: int):
    """Fairlearn ThresholdOptimizer on positive-class scores: fit on one set, predict 0/1 on another."""
    ThresholdOptimizer = optional_import("fairlearn.postprocessing", "fairness").ThresholdOptimizer

    optimizer = ThresholdOptimizer(
        estimator=_score_column(), constraints=constraint, predict_method="predict_proba",
        objective="balanced_accuracy_score", prefit=True,
    )
    try:
        optimizer.fit(np.asarray(fit_score)[:, None], np.asarray(fit_y), sensitive_features=list(fit_groups))
    except ValueError as exc:  # e.g. a group with one class only in the fitting data
        raise ConfigError(f"threshold_optimizer could not be fitted: {exc}") from None
    return optimizer.predict(np.asarray(apply_score)[:, None], sensitive_features=list(apply_groups), random_state=seed)


def _threshold_optimizer(ctx: AuditContext, data, columns, before, test_proba, positive_ids, constraint, show_progress):
    """Group thresholds fitted on the validation split's scores, applied to the test split."""
    from trustfm.audit.fairness.comparison import compare_fairness
    from trustfm.audit.fairness.group import group_fairness

    runner, config = ctx.predictor, ctx.config
    if len(runner.label_names) != 2:
        raise ConfigError("threshold_optimizer post-processing needs a binary classifier")
    pos = positive_ids[0]
    key = lambda part: [" & ".join(v) for v in zip(*(part.groups[c] for c in columns))]  # noqa: E731
    val_proba = runner.predict_proba(data.validation.texts, show_progress=show_progress)
    test = ctx.eval_part_of(data)
    adjusted = _fit_thresholds(val_proba[:, pos], (data.label_ids(data.validation) == pos).astype(int),
                               key(data.validation), test_proba[:, pos], key(test),
                               constraint=constraint, seed=config.seed)
    y_pred = np.where(adjusted == 1, pos, 1 - pos)
    y_true = data.label_ids(test)
    after = group_fairness(
        y_true, y_pred, {c: test.groups[c] for c in columns}, runner.label_names,
        positive_label=runner.label_names[pos], dataset=before.dataset, min_group_size=config.fairness.min_group_size,
        **ctx.bootstrap.kwargs(),
    )
    return compare_fairness(
        before, after, name=f"threshold_optimizer ({constraint})", before_label="argmax predictions",
        after_label="group thresholds fitted on the validation split",
        accuracy_before=ctx.bootstrap.mean(test_proba.argmax(axis=1) == y_true),
        accuracy_after=ctx.bootstrap.mean(y_pred == y_true),
    )


def _probe_threshold_optimizer(probe_set, truth, predicted, score, ctx: AuditContext, constraint):
    """Per-identity thresholds fitted on a seeded half of the probe, judged on the other half."""
    from trustfm.audit.fairness.comparison import compare_fairness
    from trustfm.audit.fairness.group import group_fairness

    protected = [c for c in probe_set.groups if c not in probe_set.descriptive]
    column = protected[0]
    groups = np.asarray(probe_set.groups[column])
    config = ctx.config
    rng = np.random.default_rng(config.seed)
    fit = np.zeros(len(truth), dtype=bool)
    for value in np.unique(groups):  # half of every group fits, the other half judges
        members = rng.permutation(np.flatnonzero(groups == value))
        fit[members[: len(members) // 2]] = True
    held = ~fit
    # a group with one class only (HateCheck's 'none' has no hateful case) cannot get a threshold
    # fitted; its rows keep the model's own decisions
    single = sorted(v for v in np.unique(groups) if len(np.unique(truth[fit & (groups == v)])) < 2)
    adjustable = ~np.isin(groups, single)
    adjusted = predicted[held].astype(int).copy()
    adjusted[adjustable[held]] = _fit_thresholds(
        score[fit & adjustable], truth[fit & adjustable].astype(int), groups[fit & adjustable],
        score[held & adjustable], groups[held & adjustable], constraint=constraint, seed=config.seed,
    )
    names = [f"not {probe_set.positive_label}", probe_set.positive_label]
    audit = lambda pred: group_fairness(  # noqa: E731
        truth[held].astype(int), pred.astype(int), {column: groups[held]}, names,
        positive_label=probe_set.positive_label, dataset=f"probe {probe_set.name}, held-out half ({held.sum()} texts)",
        intersections=False, min_group_size=config.fairness.min_group_size, **ctx.bootstrap.kwargs(),
    )
    accuracy = lambda pred: ctx.bootstrap.mean(pred == truth[held])  # noqa: E731
    return compare_fairness(
        audit(predicted[held]), audit(adjusted.astype(bool)), name=f"threshold_optimizer ({constraint}) on {column}"
        + (f"; kept the model's decisions for one-class groups: {', '.join(single)}" if single else ""),
        before_label="the model's decisions", after_label=f"per-{column} thresholds fitted on the other half of the probe",
        accuracy_before=accuracy(predicted[held]), accuracy_after=accuracy(adjusted.astype(bool)),
    )


def _score_column():
    """A pre-fitted sklearn classifier whose input already is the positive-class score (one column)."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoreColumn(ClassifierMixin, BaseEstimator):
        def __init__(self):
            self.classes_ = np.array([0, 1])  # fitted by construction

        def fit(self, X, y=None, **kwargs):
            return self

        def predict_proba(self, X):
            score = np.asarray(X, dtype=float)[:, 0]
            return np.column_stack([1 - score, score])

        def predict(self, X):
            return (np.asarray(X, dtype=float)[:, 0] >= 0.5).astype(int)

    return ScoreColumn()


def _compare_with_baseline(baseline_dir: Path, after_result, name: str, paths, save) -> None:
    from trustfm.audit.fairness.comparison import compare_fairness
    from trustfm.audit.fairness.group import FairnessResult
    from trustfm.results import Interval
    from trustfm.runs import existing_run

    baseline = existing_run(baseline_dir)
    before_path = baseline.result(name)
    if not before_path.exists():
        raise ConfigError(f"baseline {baseline.root} has no {before_path.name}: audit it the same way first")
    before = FairnessResult.model_validate(read_json(before_path))

    def accuracy(run_paths):
        path = run_paths.result("performance")
        return Interval.model_validate(read_json(path)["accuracy"]) if path.exists() else None

    save(f"{name}-comparison", compare_fairness(
        before, after_result, name=f"{read_json(paths.run_info).get('fairness_mitigation', 'none')} vs baseline",
        before_label=str(baseline.root), after_label=str(paths.root),
        accuracy_before=accuracy(baseline), accuracy_after=accuracy(paths),
    ))
