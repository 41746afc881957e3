"""Alternate benchmark arms over rounds and summarise ratios: the same-run protection every comparison uses.

On a shared machine the load changes between arms; running each arm once, in
sequence, can swing a ratio several-fold. Each round runs every arm once, in an
order that reverses every other round, and a ratio is taken within a round
(both sides under the same load). The median over rounds is reported with its
range.
"""

from __future__ import annotations

import statistics
from typing import Callable


def alternate(arms: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Seconds per arm per round. ``arms``: name -> a function that runs the arm once and returns its seconds."""
    if rounds < 3:
        raise SystemExit("use at least 3 rounds: one round cannot tell a ratio from the load around it")
    names = list(arms)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            seconds[name].append(arms[name]())
    return seconds


def ratio_summary(numerator: list[float], denominator: list[float], digits: int = 3) -> dict:
    """Per-round ratios ``numerator[i] / denominator[i]`` with their median and range."""
    ratios = [n / d for n, d in zip(numerator, denominator)]
    return {"median": round(statistics.median(ratios), digits), "min": round(min(ratios), digits),
            "max": round(max(ratios), digits), "per_round": [round(x, digits) for x in ratios]}
