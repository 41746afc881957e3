"""Counterfactual fairness for text: swap identity terms, see whether the prediction moves.

:class:`~trustfm.data.identity_terms.IdentityTerms` rewrites a text along one
axis (gender, race/ethnicity, religion, ...). :func:`counterfactual_audit` scores
original and rewritten texts with any ``predict_proba(texts) -> (n, k)``
function and reports, per axis, the flip rate and the mean absolute change in
the positive-class probability, with bootstrap intervals over source texts.
Without a positive class the change is the total-variation distance between
the two probability vectors (half the sum of absolute changes, in [0, 1]): on
two classes it equals the change of either class's probability, and on more it
counts a move between any classes, not only into or out of one.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval
from trustfm.data.identity_terms import IdentityTerms
from trustfm.results import Result, per_item_metrics

class CounterfactualPair(BaseModel):
    original: str
    counterfactual: str
    source_term: str
    target_term: str
    original_positive: float  # p(positive), or without a positive class p(the original's predicted class)
    counterfactual_positive: float  # the same class's probability after the rewrite
    flipped: bool


class AxisResult(BaseModel):
    axis: str
    texts: int  # source texts that contain a term of this axis
    pairs: int
    flip_rate: Interval  # share of pairs whose predicted label changes
    mean_abs_change: Interval  # mean |Δ p(positive)|, or without a positive class the mean total-variation distance
    mean_change_by_target: dict[str, float]  # mean signed change when the term becomes this one
    worst_pairs: list[CounterfactualPair]


class CounterfactualResult(Result):
    kind: Literal["counterfactual"] = "counterfactual"
    dataset: str
    positive_label: str | None  # None: changes measured on the whole probability vector
    label_names: list[str]
    axes: list[AxisResult]
    skipped_axes: dict[str, str]  # axis -> why it has no result
    # axis -> uses of its terms left alone because they do not name people ("wear black": a colour word)
    left_alone: dict[str, int] = {}
    examples_withheld_for_pii: int = 0  # example texts left out because they contain personal data

    def metrics(self) -> dict[str, float]:
        """``<axis>.flip_rate`` and ``<axis>.mean_abs_change``."""
        return per_item_metrics(self.axes, "axis", ("flip_rate", "mean_abs_change"))


def counterfactual_audit(
    texts: Sequence[str],
    predict_proba: Callable[[list[str]], np.ndarray],
    label_names: Sequence[str],
    *,
    positive_label: str | None = None,
    terms: IdentityTerms | None = None,
    axes: Sequence[str] | None = None,
    dataset: str = "",
    max_texts_per_axis: int = 2000,
    max_variants: int = 4,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    worst: int = 10,
    seed: int = 0,
) -> CounterfactualResult:
    """Score identity-term rewrites of ``texts`` with ``predict_proba`` (texts -> (n, k) probabilities).

    ``positive_label`` is a class name or a comma-separated list of names whose
    probabilities add up to p(positive); None measures the total-variation distance between the whole
    probability vectors instead. A flip is any change of the argmax class.
    """
    terms = terms or IdentityTerms.default()
    pos = None
    if positive_label is not None:
        # several classes may count as positive ("0,1": hate or offensive); their probabilities add up
        wanted = [p.strip() for p in positive_label.split(",")]
        unknown = [p for p in wanted if p not in label_names]
        if unknown:
            raise ValueError(f"positive label(s) {unknown} are not among {list(label_names)}")
        pos = [list(label_names).index(p) for p in wanted]
    rng = np.random.default_rng(seed)
    results, skipped, left_alone = [], {}, {}
    for axis in axes or list(terms.axes):
        if axis not in terms.axes:
            raise ValueError(f"unknown axis {axis!r}; have {sorted(terms.axes)}")
        sources: list[int] = []
        pairs: list[tuple[int, str, str, str]] = []  # (source index, source term, target term, text)
        left = sum(terms.colour_uses(text, axis) for text in texts)
        if left:
            left_alone[axis] = left
        for i, text in enumerate(texts):
            variants = terms.counterfactuals(text, axis, max_variants)
            if not variants:
                continue
            sources.append(i)
            if len(sources) > max_texts_per_axis:
                break
            source_term = terms.find(text, axis)[0]
            pairs.extend((i, source_term, target, rewritten) for target, rewritten in variants)
        if not pairs:
            skipped[axis] = "no text contains a term of this axis"
            continue
        unique_sources = sorted({p[0] for p in pairs})
        originals = [texts[i] for i in unique_sources]
        proba = predict_proba(originals + [p[3] for p in pairs])
        proba_orig = dict(zip(unique_sources, proba[: len(originals)]))
        proba_cf = proba[len(originals) :]
        before = np.stack([proba_orig[p[0]] for p in pairs])
        if pos is not None:
            p_orig, p_cf = before[:, pos].sum(axis=1), proba_cf[:, pos].sum(axis=1)
            change = np.abs(p_cf - p_orig)
        else:  # the whole vector: total variation; the shown pair follows the original's predicted class
            shown = before.argmax(axis=1)
            p_orig, p_cf = before[np.arange(len(pairs)), shown], proba_cf[np.arange(len(pairs)), shown]
            change = 0.5 * np.abs(proba_cf - before).sum(axis=1)
        flipped = before.argmax(axis=1) != proba_cf.argmax(axis=1)
        # cluster bootstrap over source texts: pairs from one text are not independent
        owner = np.searchsorted(unique_sources, [p[0] for p in pairs])
        flip_iv, change_iv = _cluster_intervals(owner, len(unique_sources), flipped, change,
                                                bootstrap_samples, confidence, rng)
        by_target: dict[str, list[float]] = {}
        for (_, _, target, _), delta in zip(pairs, p_cf - p_orig):
            by_target.setdefault(target, []).append(float(delta))
        order = np.argsort(-change)[:worst]
        results.append(
            AxisResult(
                axis=axis,
                texts=len(unique_sources),
                pairs=len(pairs),
                flip_rate=flip_iv,
                mean_abs_change=change_iv,
                mean_change_by_target={t: float(np.mean(v)) for t, v in sorted(by_target.items())},
                worst_pairs=[
                    CounterfactualPair(
                        original=texts[pairs[j][0]], counterfactual=pairs[j][3], source_term=pairs[j][1],
                        target_term=pairs[j][2], original_positive=float(p_orig[j]),
                        counterfactual_positive=float(p_cf[j]), flipped=bool(flipped[j]),
                    )
                    for j in order
                ],
            )
        )
    return CounterfactualResult(dataset=dataset, positive_label=positive_label, label_names=list(label_names),
                                axes=results, skipped_axes=skipped, left_alone=left_alone)


def _cluster_intervals(owner, clusters, flipped, change, samples, confidence, rng) -> tuple[Interval, Interval]:
    flip_value, change_value = float(flipped.mean()), float(change.mean())
    if samples <= 0 or clusters < 2:
        return Interval(value=flip_value), Interval(value=change_value)
    pair_count = np.bincount(owner, minlength=clusters).astype(np.float64)
    flip_sum = np.bincount(owner, weights=flipped.astype(np.float64), minlength=clusters)
    change_sum = np.bincount(owner, weights=change, minlength=clusters)
    draws = rng.integers(0, clusters, size=(samples, clusters))
    weight = pair_count[draws].sum(axis=1)
    flips = flip_sum[draws].sum(axis=1) / weight
    changes = change_sum[draws].sum(axis=1) / weight
    return (Interval.from_draws(flip_value, flips, confidence),
            Interval.from_draws(change_value, changes, confidence))
