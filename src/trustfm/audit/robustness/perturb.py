"""Perturbation suite: does the prediction survive changes that should not matter, and move when it should?

The perturbations themselves live in :mod:`trustfm.data.perturbations`; this
module runs them against a model and scores flips and accuracy with intervals.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, bootstrap_mean
from trustfm.data.perturbations import DIRECTIONAL, INVARIANCE, perturb_texts
from trustfm.results import Result, per_item_metrics

class PerturbedExample(BaseModel):
    original: str
    perturbed: str
    original_label: str
    perturbed_label: str
    change: float  # |p(original prediction | original) - p(original prediction | perturbed)|


class PerturbationTest(BaseModel):
    name: str
    kind: str  # invariance | directional
    n: int  # texts the perturbation applied to
    flip_rate: Interval  # share whose predicted label changed (bad for invariance, good for directional)
    accuracy: Interval | None  # on perturbed texts against the expected label (invariance: the gold label)
    mean_abs_change: float
    worst: list[PerturbedExample]


class PerturbationResult(Result):
    kind: Literal["robustness"] = "robustness"
    dataset: str
    texts: int
    clean_accuracy: float
    tests: list[PerturbationTest]
    skipped: dict[str, str]
    examples_withheld_for_pii: int = 0  # example texts left out because they contain personal data

    def metrics(self) -> dict[str, float]:
        """``<test>.flip_rate`` and, for label-preserving tests, ``<test>.accuracy``; ``worst_flip_rate``: the highest
        flip rate of the invariance tests (the changes that should not matter), for a gate or a tuning constraint."""
        out = per_item_metrics(self.tests, "name", ("flip_rate", "accuracy"))
        invariance = [t.flip_rate.value for t in self.tests if t.kind == "invariance"]
        if invariance:
            out["worst_flip_rate"] = float(max(invariance))
        return out


def perturbation_suite(
    texts: Sequence[str], labels: np.ndarray | None, predict_proba: Callable[[list[str]], np.ndarray],
    label_names: Sequence[str], *, dataset: str = "", tests: Sequence[str] | None = None, directional: bool = True,
    bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0, worst: int = 5,
) -> PerturbationResult:
    """Run each perturbation on ``texts`` (with gold ``labels`` ids (n,) if known) and score the changes."""
    rng = np.random.default_rng(seed)
    base = predict_proba(list(texts))
    base_pred = base.argmax(axis=1)
    chosen = {n: f for n, f in {**INVARIANCE, **(DIRECTIONAL if directional else {})}.items() if tests is None or n in tests}
    skipped: dict[str, str] = {}
    if "negation" in chosen and len(label_names) != 2:
        chosen.pop("negation")
        skipped["negation"] = "directional negation needs a binary (sentiment-like) classifier"
    results = []
    for name, perturb in chosen.items():
        rows, variants = perturb_texts(texts, name, perturb, seed=seed)
        if not rows:
            skipped[name] = "applies to none of the texts"
            continue
        rows_arr = np.array(rows)
        proba = predict_proba(variants)
        pred = proba.argmax(axis=1)
        flipped = (pred != base_pred[rows_arr]).astype(float)
        change = np.abs(base[rows_arr, base_pred[rows_arr]] - proba[np.arange(len(rows)), base_pred[rows_arr]])
        kind = "directional" if name in DIRECTIONAL else "invariance"
        accuracy = None
        if labels is not None:
            expected = labels[rows_arr] if kind == "invariance" else 1 - labels[rows_arr]
            accuracy = bootstrap_mean((pred == expected).astype(float), samples=bootstrap_samples,
                                      confidence=confidence, rng=rng)
        order = np.argsort(-change)[:worst]
        results.append(PerturbationTest(
            name=name, kind=kind, n=len(rows),
            flip_rate=bootstrap_mean(flipped, samples=bootstrap_samples, confidence=confidence, rng=rng),
            accuracy=accuracy, mean_abs_change=float(change.mean()),
            worst=[PerturbedExample(original=texts[rows[j]], perturbed=variants[j],
                                    original_label=label_names[base_pred[rows[j]]], perturbed_label=label_names[pred[j]],
                                    change=float(change[j])) for j in order],
        ))
    clean = float((base_pred == labels).mean()) if labels is not None else float("nan")
    return PerturbationResult(dataset=dataset, texts=len(texts), clean_accuracy=clean, tests=results, skipped=skipped)
