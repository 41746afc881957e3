"""Scores, guesses and the result of the one-run canary audit: plain functions over the model's outputs.

A canary's score says how much the model looks as if it was trained on it: an input canary's log-odds of its own
(random) label, how far the weights moved against a gradient canary's direction (its gradient pushes them back),
how far the global weights moved along a canary client's direction (its update pushes them forward).
The auditor guesses "in" for the highest scores (and, in the two-sided plans, "out" for as many lowest), abstaining
on the rest, for a few plans fixed in advance; the significance is split evenly among them (Bonferroni), so taking
the best of them keeps the stated confidence. One-sided plans matter under DP-SGD: a canary that was included but
never sampled scores like an excluded one, so "out" guesses are unsure where "in" guesses at the top are not.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm.audit.canaries.bound import epsilon_lower_bound
from trustfm.results import Result

# the guessing plans, fixed before the draws are revealed: (share guessed "in" at the top, share guessed "out" at
# the bottom) of the canaries
GUESS_PLANS = ((0.01, 0.0), (0.02, 0.0), (0.05, 0.0), (0.1, 0.0), (0.2, 0.0), (0.05, 0.05), (0.25, 0.25), (0.5, 0.5))


class GuessOutcome(BaseModel):
    guessed_in: int  # canaries guessed "in" (the highest scores)
    guessed_out: int  # canaries guessed "out" (the lowest scores)
    guesses: int
    correct: int
    epsilon_lower_bound: float


class CanaryKindAudit(BaseModel):
    """One kind of canary, after the reveal."""

    canary_kind: Literal["input", "gradient", "client"]
    canaries: int
    included: int  # how many were trained on (revealed by the audit)
    score: str  # what the score measures
    auc: float  # ROC-AUC of the scores against inclusion (0.5: the model shows nothing)
    guesses: int  # the guesses of the plan that gave the bound
    correct: int
    epsilon_lower_bound: float  # the best over ``tried``, at the result's confidence
    # the bound had every guess been right: what this many canaries can show at this delta and confidence (a
    # bound near it says the audit ran out of canaries, or that 2 m delta is not small, not that epsilon is that)
    epsilon_ceiling: float
    tried: list[GuessOutcome]


class CanaryAuditResult(Result):
    """``results/privacy_canaries.json``: the audited epsilon lower bound beside the accounted epsilon."""

    kind: Literal["privacy_canaries"] = "privacy_canaries"
    confidence: float  # of each lower bound, e.g. 0.95
    delta: float  # the delta the bound is stated at (the run's own under DP-SGD)
    delta_source: str
    accounted_epsilon: float | None  # the accountant's, None when the run trained without DP
    accounted_by: str | None = None  # whose epsilon: one DP-SGD run, client-level DP, or a whole DP search
    epsilon_lower_bound: float  # the largest over the kinds
    claim: Literal["stands", "refuted", "none"]  # none: no DP claim to test
    audits: list[CanaryKindAudit]

    def metrics(self) -> dict[str, float]:
        """``epsilon_lower_bound``, ``claim_refuted`` (1 or 0), and ``<kind>.epsilon_lower_bound`` / ``.auc``."""
        out = {"epsilon_lower_bound": self.epsilon_lower_bound, "claim_refuted": float(self.claim == "refuted")}
        for audit in self.audits:
            out[f"{audit.canary_kind}.epsilon_lower_bound"] = audit.epsilon_lower_bound
            out[f"{audit.canary_kind}.auc"] = audit.auc
        return out

    def flags(self) -> list[str]:
        if self.claim != "refuted":
            return []
        return [f"canary audit: epsilon is at least {self.epsilon_lower_bound:.2f} at {self.confidence:.0%} "
                f"confidence, above the accounted {self.accounted_epsilon:.2f}: the DP claim is refuted (a broken "
                "DP-SGD, or a wrong accounting)"]


def input_canary_scores(proba: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Log-odds of each canary's own label, log(p / (1 - p)); ``proba`` (n, classes), ``labels`` int (n,)."""
    p = np.clip(proba[np.arange(len(labels)), labels], eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def gradient_canary_scores(initial: np.ndarray, final: np.ndarray) -> np.ndarray:
    """How far the weights moved against each canary's direction: the starting weights' projection on it minus
    the trained weights', ``initial - final`` (n,)."""
    return np.asarray(initial, dtype=np.float64) - np.asarray(final, dtype=np.float64)


def client_canary_scores(initial: np.ndarray, final: np.ndarray) -> np.ndarray:
    """How far the global weights moved along each canary client's direction (its update pushes them forward):
    the trained weights' projection minus the starting weights', ``final - initial`` (n,)."""
    return np.asarray(final, dtype=np.float64) - np.asarray(initial, dtype=np.float64)


def make_guesses(scores: np.ndarray, guessed_in: int, guessed_out: int) -> np.ndarray:
    """+1 (in) for the ``guessed_in`` highest scores, -1 (out) for the ``guessed_out`` lowest, 0 (abstain) for the
    rest; int8 (n,)."""
    order = np.argsort(scores, kind="stable")
    out = np.zeros(len(scores), dtype=np.int8)
    out[order[:guessed_out]] = -1
    out[order[len(scores) - guessed_in:]] = 1
    return out


def guess_plans(canaries: int) -> list[tuple[int, int]]:
    """The (in, out) guess counts of :data:`GUESS_PLANS` for ``canaries`` canaries, at least one guess each
    side that guesses, without repeats."""
    plans = {(max(1, round(i * canaries)), max(1, round(o * canaries)) if o else 0) for i, o in GUESS_PLANS}
    return sorted(plans)


def judge(kind: str, scores: np.ndarray, included: np.ndarray, *, delta: float, confidence: float,
          score: str) -> CanaryKindAudit:
    """Guess for each plan of :func:`guess_plans`, then count what the draws ``included`` (bool) confirm and
    bound epsilon. The guesses depend on the scores alone."""
    from sklearn.metrics import roc_auc_score

    m = len(scores)
    planned = {plan: make_guesses(scores, *plan) for plan in guess_plans(m)}  # fixed before the draws are read
    significance = (1 - confidence) / len(planned)
    truth = np.where(included, 1, -1)
    tried = []
    for (guessed_in, guessed_out), guess in planned.items():
        correct = int(((guess != 0) & (guess == truth)).sum())
        tried.append(GuessOutcome(guessed_in=guessed_in, guessed_out=guessed_out, guesses=guessed_in + guessed_out,
                                  correct=correct, epsilon_lower_bound=epsilon_lower_bound(
                                      canaries=m, guesses=guessed_in + guessed_out, correct=correct, delta=delta,
                                      significance=significance)))
    best = max(tried, key=lambda t: t.epsilon_lower_bound)
    ceiling = max(epsilon_lower_bound(canaries=m, guesses=t.guesses, correct=t.guesses, delta=delta,
                                      significance=significance) for t in tried)
    auc = float(roc_auc_score(included, scores)) if 0 < included.sum() < m else float("nan")
    return CanaryKindAudit(canary_kind=kind, canaries=m, included=int(included.sum()), score=score, auc=auc,
                           guesses=best.guesses, correct=best.correct,
                           epsilon_lower_bound=best.epsilon_lower_bound, epsilon_ceiling=ceiling, tried=tried)
