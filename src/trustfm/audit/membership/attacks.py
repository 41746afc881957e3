"""Membership inference: can an attacker tell training rows from unseen rows? Plain functions over scores.

Scores are "membership scores": higher means "more likely a training row".

- Loss threshold (Yeom et al., 2018): score = -loss of the true label.
- Calibrated, LiRA-offline style (Carlini et al., 2022; difficulty calibration
  as in Watson et al., 2022): score = φ_target(x) - φ_ref(x), where
  φ = log(p / (1 - p)) of the true label's probability and φ_ref comes from a
  reference model that did not train on x. Two reference models trained on
  disjoint halves of the candidate rows give each row exactly one such model.
  The per-row difficulty (some texts are easy for every model) cancels.

Reported per attack: ROC AUC, TPR at 1% and 0.1% FPR (each with a bootstrap
interval over members and non-members resampled separately), and an empirical
lower bound on epsilon: for the threshold chosen on one half of the rows, on the
other half ε ≥ max(ln((TPR_low − δ) / FPR_high), ln((1 − FPR_high − δ) / (1 − TPR_low)))
with one-sided Clopper–Pearson bounds at ``confidence`` — a bound that a DP
guarantee (ε, δ) must not be below, with that confidence.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval
from trustfm.results import Result, per_item_metrics


class AttackScores(BaseModel):
    attack: str
    auc: Interval
    tpr_at_1pct_fpr: Interval
    tpr_at_01pct_fpr: Interval
    empirical_epsilon_lower_bound: float  # 0 when the attack shows nothing
    epsilon_bound_threshold_tpr: float
    epsilon_bound_threshold_fpr: float


class MembershipInferenceResult(Result):
    """``results/membership.json``."""

    kind: Literal["membership"] = "membership"
    members: int
    non_members: int
    reference_models: int
    reference_training: str
    members_from: str = ""  # where the members were drawn from
    non_members_from: str = ""  # where the non-members were drawn from (the training file's own distribution)
    non_member_duplicates_removed: dict[str, int] = {}  # candidate non-members that repeat a training row, by kind
    reference_models_kept: bool = False  # False: deleted after scoring (their training file holds raw text)
    reference_models_bytes: int = 0  # disk the reference runs took (kept or not)
    delta: float
    accounted_epsilon: float | None  # from DP training, when the run was private
    attacks: list[AttackScores]

    def metrics(self) -> dict[str, float]:
        """``<attack>.auc``, ``.tpr_at_1pct_fpr``, ``.tpr_at_01pct_fpr`` and ``.empirical_epsilon_lower_bound``."""
        return per_item_metrics(self.attacks, "attack",
                                ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "empirical_epsilon_lower_bound"))


def log_odds_true_label(proba: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """φ = log(p / (1 - p)) of each row's true-label probability; shape (n,)."""
    p = np.clip(proba[np.arange(len(labels)), labels], eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def cross_entropy(proba: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Per-row loss -log p(true label), in nats; shape (n,)."""
    return -np.log(np.clip(proba[np.arange(len(labels)), labels], eps, 1.0))


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """ROC AUC of scores (members positive) via the Mann–Whitney rank statistic (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([members, non_members]))
    m, n = len(members), len(non_members)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float) -> float:
    """True-positive rate at the threshold that flags at most ``fpr`` of the non-members."""
    ordered = np.sort(non_members)[::-1]
    allowed = int(math.floor(fpr * len(non_members)))
    # flag scores strictly above the (allowed+1)-th highest non-member score
    threshold = ordered[allowed] if allowed < len(ordered) else -np.inf
    return float((members > threshold).mean())


def _clopper_pearson(k: int, n: int, confidence: float, side: str) -> float:
    from scipy.stats import beta

    alpha = 1 - confidence
    if side == "low":
        return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))


def empirical_epsilon(members: np.ndarray, non_members: np.ndarray, *, delta: float, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """(epsilon lower bound, TPR, FPR at the chosen threshold); threshold chosen on one half, bound on the other."""
    rng = np.random.default_rng(seed)
    m_perm, n_perm = rng.permutation(len(members)), rng.permutation(len(non_members))
    m_fit, m_eval = members[m_perm[: len(members) // 2]], members[m_perm[len(members) // 2:]]
    n_fit, n_eval = non_members[n_perm[: len(non_members) // 2]], non_members[n_perm[len(non_members) // 2:]]

    def bound(tp: int, fp: int, pos: int, neg: int) -> float:
        tpr_low = _clopper_pearson(tp, pos, confidence, "low")
        fpr_high = _clopper_pearson(fp, neg, confidence, "high")
        candidates = [0.0]
        if tpr_low - delta > 0 and fpr_high > 0:
            candidates.append(math.log((tpr_low - delta) / fpr_high))
        if 1 - fpr_high - delta > 0 and tpr_low < 1:
            candidates.append(math.log((1 - fpr_high - delta) / (1 - tpr_low)))
        return max(candidates)

    thresholds = np.unique(np.concatenate([m_fit, n_fit]))
    best, best_threshold = -1.0, None
    for t in thresholds:
        b = bound(int((m_fit >= t).sum()), int((n_fit >= t).sum()), len(m_fit), len(n_fit))
        if b > best:
            best, best_threshold = b, t
    if best_threshold is None:
        return 0.0, 0.0, 0.0
    tp, fp = int((m_eval >= best_threshold).sum()), int((n_eval >= best_threshold).sum())
    return bound(tp, fp, len(m_eval), len(n_eval)), tp / len(m_eval), fp / len(n_eval)


def score_attack(
    name: str, members: np.ndarray, non_members: np.ndarray, *, delta: float, bootstrap_samples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> AttackScores:
    """All metrics for one attack's membership scores (members (m,), non-members (n,))."""
    rng = np.random.default_rng(seed)
    values = {"auc": auc(members, non_members), "tpr1": tpr_at_fpr(members, non_members, 0.01),
              "tpr01": tpr_at_fpr(members, non_members, 0.001)}
    draws: dict[str, list[float]] = {k: [] for k in values}
    for _ in range(bootstrap_samples):
        m = members[rng.integers(0, len(members), len(members))]
        n = non_members[rng.integers(0, len(non_members), len(non_members))]
        draws["auc"].append(auc(m, n))
        draws["tpr1"].append(tpr_at_fpr(m, n, 0.01))
        draws["tpr01"].append(tpr_at_fpr(m, n, 0.001))
    iv = {k: Interval.from_draws(values[k], np.array(draws[k]) if bootstrap_samples else None, confidence)
          for k in values}
    eps, tpr, fpr = empirical_epsilon(members, non_members, delta=delta, confidence=confidence, seed=seed)
    return AttackScores(attack=name, auc=iv["auc"], tpr_at_1pct_fpr=iv["tpr1"], tpr_at_01pct_fpr=iv["tpr01"],
                        empirical_epsilon_lower_bound=eps, epsilon_bound_threshold_tpr=tpr,
                        epsilon_bound_threshold_fpr=fpr)
