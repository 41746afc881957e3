"""The epsilon lower bound of a one-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023, Theorems 3.1 and 5.2).

``m`` canaries are each included with probability 1/2; an auditor guesses in or out for ``guesses`` of them and is
right ``correct`` times. Under (epsilon, 0)-DP the number right is stochastically dominated by
Binomial(guesses, e^eps / (1 + e^eps)); under (epsilon, delta)-DP the tail gains at most
``2 m delta max_i (P[W >= v - i] - P[W >= v]) / i`` (their Theorem 5.2). The claim (epsilon, delta) is refuted at
confidence ``c`` when that tail probability is at most ``1 - c``; the audited lower bound is the largest epsilon so
refuted (0 when none is).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom


def p_value(*, canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability, under an (epsilon, delta)-DP training run, of at least ``correct`` right out of ``guesses``
    guesses about ``canaries`` canaries; in [0, 1]."""
    if correct <= 0:
        return 1.0
    q = float(expit(epsilon))
    tail = float(binom.sf(correct - 1, guesses, q))  # P[W >= correct]
    if delta == 0:
        return tail
    i = np.arange(1, correct + 1)
    alpha = float(np.max((binom.sf(correct - i - 1, guesses, q) - tail) / i, initial=0.0))
    return min(tail + 2 * canaries * delta * alpha, 1.0)


def epsilon_lower_bound(*, canaries: int, guesses: int, correct: int, delta: float, significance: float) -> float:
    """The largest epsilon whose (epsilon, delta) claim ``correct`` right guesses refute at ``significance``
    (= 1 - confidence); 0 when even epsilon = 0 stands. Precision 1e-6."""
    def refuted_by(epsilon: float) -> float:  # > 0 while the claim is refuted
        return significance - p_value(canaries=canaries, guesses=guesses, correct=correct, epsilon=epsilon,
                                      delta=delta)

    if guesses == 0 or refuted_by(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while refuted_by(high) > 0:
        low, high = high, high * 2
        if high > 1e3:  # every guess right with a tiny significance: no finite epsilon survives in range
            return high
    return float(brentq(refuted_by, low, high, xtol=1e-6))
