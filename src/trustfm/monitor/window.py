"""One window of production traffic against the reference profile: the typed result and its computation."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.monitor.drift import class_chi_square, class_psi, ks, mmd_permutation_test, psi
from trustfm.monitor.logreader import LoggedPredictions
from trustfm.monitor.reference import Reference
from trustfm.results import Interval

MIN_FEEDBACK = 30  # labelled answers a window needs before its accuracy is reported
MIN_GROUP = 30  # answers a group needs in a window before its rate enters a gap
EMBEDDED_TEXTS = 500  # texts per window embedded for the two-sample test (a seeded sample beyond)
PERMUTATIONS = 200  # of the two-sample test
MMD_P_FLOOR = 1 / (PERMUTATIONS + 1)  # the smallest p-value the test can give


class MonitorWindow(BaseModel):
    """Drift, rates and (with feedback) quality of the answers received in ``[start, end)`` (ISO UTC).

    PSI values are unitless (≥ 0; > 0.2 reads as a large shift); ``*_p`` are p-values in [0, 1]; rates are shares
    of the window's ``n`` answers in [0, 1]; lengths are in characters. A field is None when the window lacks
    what it needs, and ``notes`` says why (no detector, no redacted texts, too little feedback, ...).
    """

    start: str
    end: str
    n: int
    requests: int
    class_counts: dict[str, int]
    prediction_psi: float | None = None
    prediction_chi2: float | None = None
    prediction_chi2_p: float | None = None
    confidence_psi: float | None = None
    confidence_ks: float | None = None
    confidence_ks_p: float | None = None
    length_psi: float | None = None
    length_ks: float | None = None
    length_ks_p: float | None = None
    embedding_mmd2: float | None = None
    embedding_mmd_p: float | None = None
    embedded_texts: int = 0
    ood_rate: float | None = None
    abstain_rate: float = 0.0
    override_rate: float = 0.0
    feedback: int = 0
    accuracy: Interval | None = None
    macro_f1: Interval | None = None
    expected_calibration_error: float | None = None
    group_source: str | None = None  # "request" (the client named groups) or "identity terms" (found in text)
    group_counts: dict[str, int] = {}
    group_positive_rates: dict[str, float] = {}
    positive_rate_gap: float | None = None
    group_accuracy: dict[str, float] = {}
    accuracy_gap: float | None = None
    # answers logged without their redacted text when judged (redaction pending, or a hash/none log policy): the
    # embedding test waits for them, and a later monitor call judges the window again once they are there
    texts_missing: int = 0
    notes: list[str] = []

    def metrics(self) -> dict[str, float]:
        """Flat numbers an alert rule may name (see :data:`WINDOW_METRICS`); missing values are left out."""
        out: dict[str, float] = {"n": float(self.n), "requests": float(self.requests),
                                 "feedback": float(self.feedback), "abstain_rate": self.abstain_rate,
                                 "override_rate": self.override_rate}
        for name in WINDOW_METRICS:
            value = getattr(self, name, None)
            if isinstance(value, Interval):
                out[name] = value.value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)
        return out


WINDOW_METRICS = ("n", "requests", "feedback", "prediction_psi", "prediction_chi2", "prediction_chi2_p",
                  "confidence_psi", "confidence_ks", "confidence_ks_p", "length_psi", "length_ks", "length_ks_p",
                  "embedding_mmd2", "embedding_mmd_p", "ood_rate", "abstain_rate", "override_rate", "accuracy",
                  "macro_f1", "expected_calibration_error", "positive_rate_gap", "accuracy_gap")


def _gap(values: dict[str, float]) -> float | None:
    return max(values.values()) - min(values.values()) if len(values) >= 2 else None


def embedding_drift(window: MonitorWindow, reference: Reference, logged: LoggedPredictions, readable: list[int], *,
                    embed: Callable[[Sequence[str]], np.ndarray], seed: int, permutations: int = PERMUTATIONS) -> None:
    """Set ``window``'s embedding two-sample test (MMD, permutation p-value) from the ``readable`` rows' texts (a
    seeded sample of at most :data:`EMBEDDED_TEXTS`) against the reference embeddings."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(readable)[:EMBEDDED_TEXTS].tolist())
    current = embed([logged.texts[i] for i in chosen])
    ref = reference.embeddings[rng.permutation(len(reference.embeddings))[:EMBEDDED_TEXTS]]
    window.embedding_mmd2, window.embedding_mmd_p = mmd_permutation_test(ref, current, permutations=permutations,
                                                                         seed=seed)
    window.embedded_texts = len(chosen)


def evaluate_window(reference: Reference, logged: LoggedPredictions, *, start: str, end: str,
                    embed: Callable[[Sequence[str]], np.ndarray] | None, bootstrap_samples: int = 1000,
                    confidence: float = 0.95, seed: int = 0, permutations: int = PERMUTATIONS,
                    images: bool = False) -> MonitorWindow:
    """The window's result. ``embed``: texts -> (n, d) embeddings with the run's model (None: skip the
    embedding test); ``bootstrap_samples``/``confidence``/``seed``: intervals of the feedback metrics.
    ``images``: the served model classifies images, whose log rows keep a hash and no pixels: no length or
    embedding drift, and groups only from the requests."""
    from trustfm.audit.fairness.plugin import identity_mentions
    from trustfm.audit.performance.evaluation import evaluate_predictions

    profile = reference.profile
    names = profile.label_names
    k = len(names)
    n = len(logged)
    known = logged.predicted >= 0
    counts = np.bincount(logged.predicted[known], minlength=k)
    window = MonitorWindow(start=start, end=end, n=n, requests=len(set(logged.request_ids)),
                           class_counts={name: int(c) for name, c in zip(names, counts)})
    notes = window.notes
    if n == 0:
        notes.append("empty window: no answers")
        return window
    if counts.sum():
        window.prediction_psi = class_psi(profile.class_proportions, counts)
        window.prediction_chi2, window.prediction_chi2_p = class_chi_square(profile.class_proportions, counts)
    confidences = logged.confidence[~np.isnan(logged.confidence)]
    if len(confidences):
        window.confidence_psi = psi(reference.confidences, confidences)
        window.confidence_ks, window.confidence_ks_p = ks(reference.confidences, confidences)
    if images:
        notes.append("image answers: the log keeps each image's sha256, not its pixels, so there is no length or "
                     "embedding drift; prediction, confidence, OOD and feedback are judged")
    else:
        window.length_psi = psi(reference.lengths, logged.chars)
        window.length_ks, window.length_ks_p = ks(reference.lengths, logged.chars)
    has_ood = ~np.isnan(logged.ood)
    if has_ood.any():
        window.ood_rate = float(logged.ood[has_ood].mean())
    else:
        notes.append("no OOD flags: the served run has no detector (run trustfm audit ood)")
    window.abstain_rate = float(logged.abstained.mean())
    window.override_rate = float(logged.overridden.mean())

    readable = [] if images else [i for i, t in enumerate(logged.texts) if t is not None]
    if not images:  # an image's log row has no pixels to embed (said in the notes above)
        window.texts_missing = n - len(readable)
        if embed is None:
            notes.append("embedding drift not computed (no model given)")
        elif len(readable) < 2:
            notes.append("embedding drift not computed: the log keeps no redacted texts for this window "
                         "(log_text hash or none, or redaction still pending: judged again when they arrive)")
        else:
            embedding_drift(window, reference, logged, readable, embed=embed, seed=seed, permutations=permutations)

    labelled = logged.true_label >= 0
    window.feedback = int(labelled.sum())
    usable = labelled & ~np.isnan(logged.probabilities).any(axis=1)
    if usable.sum() >= MIN_FEEDBACK:
        proba = logged.probabilities[usable]
        proba = proba / proba.sum(axis=1, keepdims=True)
        performance = evaluate_predictions(logged.true_label[usable], proba, names, split="production",
                                           bootstrap_samples=bootstrap_samples, confidence=confidence, seed=seed)
        window.accuracy, window.macro_f1 = performance.accuracy, performance.macro_f1
        window.expected_calibration_error = performance.expected_calibration_error
    elif window.feedback:
        notes.append(f"{window.feedback} labelled answers: accuracy needs at least {MIN_FEEDBACK}")

    if any(g is not None for g in logged.groups):
        groups, window.group_source = np.asarray([g or "unnamed" for g in logged.groups]), "request"
    elif readable:
        found = identity_mentions([logged.texts[i] for i in readable])
        groups = np.full(n, "unread", dtype=object)
        groups[readable] = found
        window.group_source = "identity terms"
    else:
        groups = None
    if groups is not None:
        # the reference's positive class (none on a task of more than two classes without one configured)
        positive = (None if profile.positive_label is None else
                    [profile.label_names.index(name) for name in profile.positive_label.split(",")])
        for group in sorted(set(groups) - {"none", "unread", "unnamed"}):
            members = (groups == group) & known
            window.group_counts[group] = int(members.sum())
            if members.sum() >= MIN_GROUP:
                if positive is not None:
                    window.group_positive_rates[group] = float(np.mean(np.isin(logged.predicted[members], positive)))
                judged = members & labelled
                if judged.sum() >= MIN_GROUP:
                    window.group_accuracy[group] = float(np.mean(logged.predicted[judged] ==
                                                                 logged.true_label[judged]))
        window.positive_rate_gap = _gap(window.group_positive_rates)
        window.accuracy_gap = _gap(window.group_accuracy)
    for name in ("prediction_psi", "confidence_psi", "length_psi"):
        value = getattr(window, name)
        if value is not None and not math.isfinite(value):
            setattr(window, name, None)
    return window
