"""``trustfm audit compare PARENT CHILD``: what compression cost, per metric, per group and per risk.

Both models answer the same examples, and every delta (child - parent) gets a *paired*
bootstrap interval: each resample draws the same rows for both models, so the interval
reflects the change, not the two models' separate sampling noise. Measured:

- the evaluation split: accuracy, macro-F1, expected calibration error;
- groups: per-group accuracy and selection rate, and the gaps between groups, for each group column of
  the data and each probe given (``--probe``); the headline ``worst_group_accuracy_drop`` is the largest
  drop of any slice's worst group;
- invariance perturbations (typos, casing, ...): flip rates on a sample of the evaluation split;
- a black-box attack (DeepWordBug) on a smaller sample: success rate and robust accuracy;
- out-of-distribution detection (``--ood-data``): max-softmax AUROC;
- membership inference (when the run has non-members from its training file): the loss attack's AUC.

The rows on which the two models disagree are listed with counts per class and per group: Hooker et al.'s
"compression-identified exemplars". The result is ``results/compare.json`` in the child run, so a policy
bounds it as ``compare.worst_group_accuracy_drop <= 0.02`` or ``compare.accuracy.delta >= -0.01``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.results import Interval, Result, put_metric

Stat = Callable[[np.ndarray, "Outputs"], float]  # (row positions, one model's outputs) -> a number


class MetricDelta(BaseModel):
    """One metric on both models: ``delta`` = child - parent, with its paired bootstrap interval."""

    metric: str  # e.g. accuracy, group.gender.female.accuracy, robustness.typo_swap.flip_rate
    parent: float
    child: float
    delta: Interval
    n: int  # examples behind it
    higher_is_better: bool | None = None  # None: neither direction is better (a selection rate)


class DisagreementExample(BaseModel):
    text: str
    gold: str | None
    parent_label: str
    child_label: str


class Disagreements(BaseModel):
    """Rows whose predicted class changed ("compression-identified exemplars")."""

    dataset: str
    rows: int
    changed: int
    rate: float  # changed / rows
    child_right: int  # changed rows where the child is now right
    parent_right: int  # changed rows where the parent was right
    by_class: dict[str, int]  # gold class -> changed rows
    by_group: dict[str, dict[str, int]]  # slice -> group -> changed rows
    examples: list[DisagreementExample]
    examples_withheld_for_pii: int = 0


class CompressionComparison(Result):
    """``results/compare.json`` of a compressed run: its parent's metrics against its own, on the same rows."""

    kind: Literal["compression-comparison"] = "compression-comparison"
    title = "Compression: what it cost"
    parent: str
    child: str
    method: str | None
    dataset: str
    bootstrap_samples: int
    agreement: float  # share of evaluation rows with the same predicted class
    worst_group_accuracy_drop: Interval | None = None  # parent worst-group accuracy - child's, worst slice
    worst_group_slice: str | None = None
    deltas: list[MetricDelta]
    disagreements: Disagreements
    not_compared: dict[str, str] = {}  # what was not measured, and why

    def undefined_metrics(self) -> dict[str, str]:
        """``worst_group_accuracy_drop`` where no slice had two groups large enough (or the data has no groups)."""
        if self.worst_group_accuracy_drop is None and "worst_group" in self.not_compared:
            return {"worst_group_accuracy_drop": self.not_compared.get("group") or self.not_compared["worst_group"]}
        return {}

    def metrics(self) -> dict[str, float]:
        """``<metric>.delta`` (with ``.low``/``.high``), ``<metric>.parent``, ``<metric>.child``, the headline
        ``worst_group_accuracy_drop``, ``accuracy_drop`` (parent - child), ``agreement`` and ``disagreement_rate``."""
        out: dict[str, float] = {"agreement": self.agreement, "disagreement_rate": self.disagreements.rate}
        put_metric(out, "worst_group_accuracy_drop", self.worst_group_accuracy_drop)
        for d in self.deltas:
            put_metric(out, f"{d.metric}.delta", d.delta)
            out[f"{d.metric}.parent"], out[f"{d.metric}.child"] = d.parent, d.child
            if d.metric == "accuracy":
                put_metric(out, "accuracy_drop", _negated(d.delta))
        return out

    def flags(self) -> list[str]:
        worse = [d for d in self.deltas if d.higher_is_better is not None and d.delta.low is not None
                 and (d.delta.high < 0 if d.higher_is_better else d.delta.low > 0)]
        lines = [f"compression made {d.metric} worse: {d.parent:.4f} -> {d.child:.4f} (change {d.delta.value:+.4f}, "
                 f"interval [{d.delta.low:+.4f}, {d.delta.high:+.4f}] excludes 0)" for d in worse[:5]]
        if len(worse) > 5:
            lines.append(f"compression made {len(worse) - 5} more metrics worse: see results/compare.json")
        return lines


def _negated(interval: Interval) -> Interval:
    return Interval(value=-interval.value, low=None if interval.high is None else -interval.high,
                    high=None if interval.low is None else -interval.low, confidence=interval.confidence)


@dataclass
class Outputs:
    """One model's answers on one example set: probabilities (n, k) and whatever the stats read besides."""

    proba: np.ndarray
    extra: dict


@dataclass
class PairedSet:
    """An example set both models answered: gold ids (n,) or None, group labels per slice, and the resampling
    strata (arrays of row positions resampled separately, e.g. members and non-members)."""

    name: str
    parent: Outputs
    child: Outputs
    gold: np.ndarray | None
    groups: dict[str, np.ndarray]
    strata: list[np.ndarray]


class PairedBootstrap:
    """Resampled row positions shared by both models: ``samples`` draws within each stratum."""

    def __init__(self, strata: list[np.ndarray], *, samples: int, seed: int):
        rng = np.random.default_rng(seed)
        self.draws = [np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata]) for _ in range(samples)] \
            if samples > 0 and all(len(s) > 1 for s in strata) else []
        self.all_rows = np.concatenate(strata) if strata else np.zeros(0, dtype=np.int64)

    def delta(self, name: str, stat: Stat, pair: PairedSet, *, confidence: float,
              higher_is_better: bool | None) -> MetricDelta | None:
        """``stat`` on both models, all rows and each resample; None when the stat is undefined on all rows."""
        parent, child = stat(self.all_rows, pair.parent), stat(self.all_rows, pair.child)
        if not (np.isfinite(parent) and np.isfinite(child)):
            return None
        diffs = np.array([stat(rows, pair.child) - stat(rows, pair.parent) for rows in self.draws])
        diffs = diffs[np.isfinite(diffs)]
        return MetricDelta(metric=name, parent=float(parent), child=float(child), n=len(self.all_rows),
                           delta=Interval.from_draws(float(child - parent), diffs if len(diffs) else None, confidence),
                           higher_is_better=higher_is_better)


def _accuracy(gold: np.ndarray) -> Stat:
    return lambda rows, out: float((out.proba[rows].argmax(1) == gold[rows]).mean()) if len(rows) else np.nan


def _macro_f1(gold: np.ndarray, k: int) -> Stat:
    from trustfm.metrics import confusion_counts, macro_f1_from_confusion

    return lambda rows, out: float(macro_f1_from_confusion(confusion_counts(gold[rows], out.proba[rows].argmax(1), k)))


def _ece(gold: np.ndarray, n_bins: int) -> Stat:
    from trustfm.metrics import calibration_bins

    return lambda rows, out: calibration_bins(gold[rows], out.proba[rows], n_bins)[0]


def _in_group(groups: np.ndarray, group: str, stat: Stat) -> Stat:
    def within(rows, out):
        chosen = rows[groups[rows] == group]
        return stat(chosen, out) if len(chosen) else np.nan

    return within


def _selection(positive_ids: Sequence[int]) -> Stat:
    return lambda rows, out: float(np.isin(out.proba[rows].argmax(1), positive_ids).mean()) if len(rows) else np.nan


def _spread(per_group: list[Stat], *, worst: bool = False) -> Stat:
    """Max - min of per-group stats (a gap), or with ``worst`` the smallest one (worst-group accuracy)."""

    def gap(rows, out):
        values = np.array([s(rows, out) for s in per_group])
        values = values[np.isfinite(values)]
        if len(values) < (1 if worst else 2):
            return np.nan
        return float(values.min()) if worst else float(values.max() - values.min())

    return gap


def _mean_extra(key: str) -> Stat:
    return lambda rows, out: float(out.extra[key][rows].mean()) if len(rows) else np.nan


def _auc(score_key: str, positive: np.ndarray) -> Stat:
    from trustfm.metrics import binary_roc_auc

    def auc(rows, out):
        y = positive[rows]
        return binary_roc_auc(y, out.extra[score_key][rows]) if 0 < y.sum() < len(y) else np.nan

    return auc


def group_deltas(pair: PairedSet, boot: PairedBootstrap, *, prefix: str, positive_ids: Sequence[int] | None,
                 label_names: Sequence[str], min_group_size: int,
                 confidence: float) -> tuple[list[MetricDelta], tuple[float, str, Interval] | None]:
    """Per-group accuracy and selection rate, the accuracy and selection gaps, and the worst group's accuracy
    of every slice; returns the deltas and the slice with the largest worst-group accuracy drop. Without
    ``positive_ids`` (more than two classes, none named) every class's selection rate is compared
    (``<group>.selection_rate.<class>``, ``selection_rate_gap.<class>``)."""
    targets = ([("", positive_ids)] if positive_ids is not None else
               [(f".{name}", [c]) for c, name in enumerate(label_names)])
    deltas: list[MetricDelta] = []
    worst_drop = None
    for slice_name, labels in pair.groups.items():
        names, counts = np.unique(labels, return_counts=True)
        judged = [str(g) for g, c in zip(names, counts) if c >= min_group_size and str(g) not in ("", "nan", "None")]
        if len(judged) < 2:
            continue
        accuracy = [_in_group(labels, g, _accuracy(pair.gold)) for g in judged] if pair.gold is not None else []
        for g, acc in zip(judged, accuracy):
            deltas.append(boot.delta(f"{prefix}.{slice_name}.{g}.accuracy", acc, pair, confidence=confidence,
                                     higher_is_better=True))
        for suffix, ids in targets:
            selection = [_in_group(labels, g, _selection(ids)) for g in judged]
            for g, sel in zip(judged, selection):
                deltas.append(boot.delta(f"{prefix}.{slice_name}.{g}.selection_rate{suffix}", sel, pair,
                                         confidence=confidence, higher_is_better=None))
            deltas.append(boot.delta(f"{prefix}.{slice_name}.selection_rate_gap{suffix}", _spread(selection), pair,
                                     confidence=confidence, higher_is_better=False))
        if accuracy:
            deltas.append(boot.delta(f"{prefix}.{slice_name}.accuracy_gap", _spread(accuracy), pair,
                                     confidence=confidence, higher_is_better=False))
            worst = boot.delta(f"{prefix}.{slice_name}.worst_group_accuracy", _spread(accuracy, worst=True), pair,
                               confidence=confidence, higher_is_better=True)
            deltas.append(worst)
            if worst is not None and (worst_drop is None or -worst.delta.value > worst_drop[0]):
                worst_drop = (-worst.delta.value, f"{prefix}.{slice_name}", _negated(worst.delta))
    return [d for d in deltas if d is not None], worst_drop


def check_lineage(parent_ctx, child_ctx) -> dict:
    """The child's ``compression`` block, after checking that it was made from this parent's current weights."""
    from trustfm.models.loading import model_weight_hashes

    block = (child_ctx.run_info.model_extra or {}).get("compression")
    if not block:
        raise ConfigError(f"{child_ctx.paths.root} is not a compressed run (no compression block in its run.json): "
                          "make one with trustfm compress")
    if Path(block["parent"]).resolve() != parent_ctx.paths.root.resolve():
        raise ConfigError(f"{child_ctx.paths.root} is not a compression of {parent_ctx.paths.root}: "
                          f"its parent is {block['parent']}")
    if block.get("parent_model_sha256") != model_weight_hashes(parent_ctx.paths.model):
        raise ConfigError(f"{parent_ctx.paths.root}'s model changed after {child_ctx.paths.root} was made from it "
                          "(weight hashes differ): compress it again")
    return block


def _sample(n: int, limit: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _robustness_pairs(texts: list[str], parent, child, *, seed: int) -> list[PairedSet]:
    """One paired set per invariance perturbation: the texts it changed, and whether each model's label flipped."""
    from trustfm.data.perturbations import INVARIANCE, perturb_texts

    base = {"parent": parent.predict_proba(texts).argmax(1), "child": child.predict_proba(texts).argmax(1)}
    pairs = []
    for name, perturb in INVARIANCE.items():
        rows, variants = perturb_texts(texts, name, perturb, seed=seed)  # the robustness audit's variants
        if len(rows) < 2:
            continue
        rows_arr = np.array(rows)
        outputs = {}
        for side, model in (("parent", parent), ("child", child)):
            proba = model.predict_proba(variants)
            outputs[side] = Outputs(proba, {"flip": (proba.argmax(1) != base[side][rows_arr]).astype(float)})
        pairs.append(PairedSet(name, outputs["parent"], outputs["child"], None, {}, [np.arange(len(rows))]))
    return pairs


def _corruption_pairs(paths: list[str], parent, child, *, seed: int, severity: int = 3) -> list[PairedSet]:
    """One paired set per image corruption (at ``severity``): whether each model's label flipped."""
    from trustfm.audit.corruption.corruptions import CORRUPTIONS, corrupt

    images = parent.inputs.encode(paths).pixels
    base = {"parent": parent.predict_proba(list(images)).argmax(1), "child": child.predict_proba(list(images)).argmax(1)}
    pairs = []
    for name in CORRUPTIONS:  # the corruption audit's images exactly (corrupt seeds each image by its bytes)
        corrupted = list(corrupt(images, name, severity, seed=seed))
        outputs = {side: Outputs(proba := model.predict_proba(corrupted),
                                 {"flip": (proba.argmax(1) != base[side]).astype(float)})
                   for side, model in (("parent", parent), ("child", child))}
        pairs.append(PairedSet(f"{name}_s{severity}", outputs["parent"], outputs["child"], None, {},
                               [np.arange(len(paths))]))
    return pairs


def _attack_pair(texts: list[str], gold: np.ndarray, parent, child, *, seed: int) -> PairedSet:
    from trustfm.audit.attacks.recipes import deepwordbug_attack

    outputs = {}
    for side, model in (("parent", parent), ("child", child)):
        # the search in fp32 on both sides: a bf16 search on the torch side only would make the two attacks
        # differ by more than the models do
        result = deepwordbug_attack(texts, gold, model.predict_proba, model.label_names, bootstrap_samples=0,
                                    seed=seed)
        attacked, succeeded = np.zeros(len(texts)), np.zeros(len(texts))
        attacked[result.attacked_rows] = 1.0
        succeeded[result.succeeded_rows] = 1.0
        correct = (model.predict_proba(texts).argmax(1) == gold).astype(float)
        outputs[side] = Outputs(np.zeros((len(texts), 1)), {"attacked": attacked, "succeeded": succeeded,
                                                             "robust": correct * (1.0 - succeeded)})
    return PairedSet("deepwordbug", outputs["parent"], outputs["child"], gold, {}, [np.arange(len(texts))])


def _success_rate(rows, out):
    attacked = out.extra["attacked"][rows].sum()
    return float(out.extra["succeeded"][rows].sum() / attacked) if attacked else np.nan


def _scored_pair(name: str, positives: list[str], negatives: list[str], parent, child,
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray], labels: np.ndarray | None = None) -> PairedSet:
    """Texts of two kinds (positives first), each model's score for being a positive; ``labels`` the gold ids
    (for a loss score)."""
    texts = positives + negatives
    is_positive = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    outputs = {side: Outputs(p := model.predict_proba(texts), {"score": score(p, labels)})
               for side, model in (("parent", parent), ("child", child))}
    strata = [np.arange(len(positives)), np.arange(len(positives), len(texts))]
    return PairedSet(name, outputs["parent"], outputs["child"], is_positive.astype(np.int64), {}, strata)


def compare_runs(parent_dir: str | Path, child_dir: str | Path, *, probes: Sequence[str] = (),
                 probe_data: Path | None = None, probe_positive: str | None = None,
                 positive_label: str | None = None, ood_data: Path | None = None, ood_text_column: str | None = None,
                 robustness_texts: int = 300, attack_texts: int = 60, membership_rows: int = 300,
                 examples: int = 10, show_progress: bool = False) -> CompressionComparison:
    """Judge the parent's and the child's models on the same examples; writes the child's ``results/compare.json``.

    ``robustness_texts``/``attack_texts``/``membership_rows``: evaluation texts perturbed, attacked, and
    training rows (with as many non-members) used for the membership attack; 0 skips that part.
    """
    from trustfm.audit.context import AuditContext
    from trustfm.audit.fairness.plugin import positive_class_ids, probe_fit
    from trustfm.audit.membership.attacks import cross_entropy
    from trustfm.audit.membership.plugin import non_member_source
    from trustfm.data.probes import load_probe

    pctx, cctx = AuditContext(parent_dir, show_progress=show_progress), AuditContext(child_dir)
    block = check_lineage(pctx, cctx)
    parent, child = pctx.predictor, cctx.predictor
    names = parent.label_names
    if child.label_names != names:
        raise ConfigError(f"{child_dir} has classes {child.label_names}, its parent {names}")
    config, boot_cfg = pctx.config, pctx.bootstrap
    conf, seed, samples = boot_cfg.confidence, boot_cfg.seed, boot_cfg.samples
    positive = positive_class_ids(names, positive_label or config.fairness.positive_label)
    deltas: list[MetricDelta] = []
    not_compared: dict[str, str] = {}
    worst: list[tuple[float, str, Interval]] = []

    def add(items):
        deltas.extend(d for d in items if d is not None)

    # the evaluation split, with the data's group columns
    part = pctx.eval_part
    gold = pctx.data.label_ids(part)
    eval_pair = PairedSet("eval", Outputs(parent.predict_proba(part.texts, show_progress=show_progress), {}),
                          Outputs(child.predict_proba(part.texts, show_progress=show_progress), {}), gold,
                          {c: np.asarray(v, dtype=str) for c, v in part.groups.items()}, [np.arange(len(part))])
    boot = PairedBootstrap(eval_pair.strata, samples=samples, seed=seed)
    add([boot.delta("accuracy", _accuracy(gold), eval_pair, confidence=conf, higher_is_better=True),
         boot.delta("macro_f1", _macro_f1(gold, len(names)), eval_pair, confidence=conf, higher_is_better=True),
         boot.delta("expected_calibration_error", _ece(gold, config.evaluate.calibration_bins), eval_pair,
                    confidence=conf, higher_is_better=False)])
    group_items, drop = group_deltas(eval_pair, boot, prefix="group", positive_ids=positive, label_names=names,
                                     min_group_size=config.fairness.min_group_size, confidence=conf)
    add(group_items)
    worst += [drop] if drop else []
    if not part.groups:
        not_compared["group"] = "the run's data has no group columns (data.group_columns)"
    # probes: binary framing, the run's positive class against the probe's positive label
    for probe in probes:
        probe_set = load_probe(probe, data_dir=probe_data, positive_label=probe_positive)
        probe_fit(probe_set, pctx, mapped=positive_label is not None)
        if positive is None:
            raise ConfigError(f"probe {probe_set.name} has two labels and this model {len(names)} classes: name the "
                              f"model class(es) that mean '{probe_set.positive_label}' with --positive-label")
        truth = np.array([label == probe_set.positive_label for label in probe_set.labels], dtype=np.int64)

        def binary(model):
            p = model.predict_proba(probe_set.texts)[:, positive].sum(axis=1)
            return Outputs(np.stack([1.0 - p, p], axis=1), {})

        pair = PairedSet(probe, binary(parent), binary(child), truth,
                         {c: np.asarray(v, dtype=str) for c, v in probe_set.groups.items()
                          if c not in probe_set.descriptive}, [np.arange(len(probe_set))])
        probe_boot = PairedBootstrap(pair.strata, samples=samples, seed=seed)
        add([probe_boot.delta(f"probe.{probe}.accuracy", _accuracy(truth), pair, confidence=conf,
                              higher_is_better=True)])
        items, drop = group_deltas(pair, probe_boot, prefix=f"probe.{probe}", positive_ids=[1], label_names=names,
                                   min_group_size=config.fairness.min_group_size, confidence=conf)
        add(items)
        worst += [drop] if drop else []
    # robustness: invariance perturbations (images: corruptions) on a sample of the evaluation split
    images = config.data.modality == "image"
    rows = _sample(len(part), robustness_texts, seed)
    perturbed_pairs = _corruption_pairs if images else _robustness_pairs
    for pair in perturbed_pairs([part.texts[i] for i in rows], parent, child, seed=seed) if len(rows) else []:
        add([PairedBootstrap(pair.strata, samples=samples, seed=seed).delta(
            f"robustness.{pair.name}.flip_rate", _mean_extra("flip"), pair, confidence=conf, higher_is_better=False)])
    if not len(rows):
        not_compared["robustness"] = "robustness_texts is 0"
    # a black-box attack on a smaller sample
    rows = _sample(len(part), attack_texts, seed)
    if images:
        not_compared["attack"] = ("white-box image attacks need gradients, which an ONNX child has none of: compare "
                                  "the adversarial audit of each torch model")
    elif len(rows):
        pair = _attack_pair([part.texts[i] for i in rows], gold[rows], parent, child, seed=seed)
        attack_boot = PairedBootstrap(pair.strata, samples=samples, seed=seed)
        add([attack_boot.delta("attack.deepwordbug.success_rate", _success_rate, pair, confidence=conf,
                               higher_is_better=False),
             attack_boot.delta("attack.deepwordbug.robust_accuracy", _mean_extra("robust"), pair, confidence=conf,
                               higher_is_better=True)])
    else:
        not_compared["attack"] = "attack_texts is 0"
    # out-of-distribution detection by max-softmax
    if ood_data is not None:
        if images:  # a folder of images, or a table of image paths
            from trustfm.data.prepare import load_labelled

            outside = load_labelled(Path(ood_data), config.data, labelled=False).texts[:1000]
        else:
            from trustfm.data.io import read_table

            frame = read_table(Path(ood_data))
            column = ood_text_column or config.data.text_column
            if column not in frame.columns:
                raise ConfigError(f"--ood-data {ood_data}: no text column '{column}'")
            outside = [t for t in frame[column].astype(str).tolist() if t.strip()][:1000]
        inside = [part.texts[i] for i in _sample(len(part), 1000, seed)]
        pair = _scored_pair("ood", outside, inside, parent, child, lambda p, _: -p.max(axis=1))
        add([PairedBootstrap(pair.strata, samples=samples, seed=seed).delta(
            "ood.max_softmax.auroc", _auc("score", pair.gold), pair, confidence=conf, higher_is_better=True)])
    else:
        not_compared["ood"] = "no --ood-data given"
    # membership inference: the loss attack (lower loss on training rows than on unseen rows of the same file)
    source = non_member_source(pctx)
    if source is None or not membership_rows:
        from trustfm.audit.membership.plugin import NO_NON_MEMBERS

        not_compared["membership"] = NO_NON_MEMBERS if source is None else "membership_rows is 0"
    else:
        outside_texts, outside_labels, _ = source
        train = pctx.data.train
        members = _sample(len(train), membership_rows, seed)
        others = _sample(len(outside_texts), len(members), seed + 1)
        index = {n: i for i, n in enumerate(names)}
        labels = np.r_[pctx.data.label_ids(train)[members], [index[outside_labels[i]] for i in others]].astype(np.int64)
        pair = _scored_pair("membership", [train.texts[i] for i in members], [outside_texts[i] for i in others],
                            parent, child, lambda p, y: -cross_entropy(p, y), labels)
        add([PairedBootstrap(pair.strata, samples=samples, seed=seed).delta(
            "membership.loss_attack.auc", _auc("score", pair.gold), pair, confidence=conf, higher_is_better=False)])
    headline = max(worst, key=lambda w: w[0]) if worst else None
    if headline is None:
        not_compared["worst_group"] = "no slice with two groups of at least fairness.min_group_size rows"
    result = CompressionComparison(
        parent=str(pctx.paths.root), child=str(cctx.paths.root), method=block.get("method"),
        dataset=f"{part.file} ({pctx.eval_split} split, {len(part)} rows)", bootstrap_samples=samples,
        agreement=float((eval_pair.parent.proba.argmax(1) == eval_pair.child.proba.argmax(1)).mean()),
        worst_group_accuracy_drop=headline[2] if headline else None,
        worst_group_slice=headline[1] if headline else None,
        deltas=deltas, disagreements=disagreements(eval_pair, part.texts, names, cctx, limit=examples),
        not_compared=not_compared)
    cctx.save("compare", result)
    return result


def disagreements(pair: PairedSet, texts: Sequence[str], names: Sequence[str], ctx, *, limit: int) -> Disagreements:
    """The rows whose predicted class changed, counted per gold class and per group, with PII-screened examples."""
    parent_pred, child_pred = pair.parent.proba.argmax(1), pair.child.proba.argmax(1)
    changed = np.flatnonzero(parent_pred != child_pred)
    gold = pair.gold
    by_class = {names[c]: int((gold[changed] == c).sum()) for c in range(len(names))} if gold is not None else {}
    by_group = {s: {str(g): int(c) for g, c in zip(*np.unique(labels[changed], return_counts=True))}
                for s, labels in pair.groups.items()}
    screen = ctx.example_screen()
    shown = screen.select(list(changed), lambda i: (texts[i],), limit=limit)
    return Disagreements(
        dataset=pair.name, rows=len(texts), changed=len(changed), rate=len(changed) / max(len(texts), 1),
        child_right=int((child_pred[changed] == gold[changed]).sum()) if gold is not None else 0,
        parent_right=int((parent_pred[changed] == gold[changed]).sum()) if gold is not None else 0,
        by_class=by_class, by_group=by_group,
        examples=[DisagreementExample(text=texts[i], gold=None if gold is None else names[int(gold[i])],
                                      parent_label=names[int(parent_pred[i])], child_label=names[int(child_pred[i])])
                  for i in shown],
        examples_withheld_for_pii=screen.withheld)
