"""Single-request latency of a predictor: what one user waits for one text."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np


def single_text_latency(predictor, texts: Sequence[str], *, warmup: int = 3) -> dict[str, float]:
    """Milliseconds per ``predictor.predict_proba([text])`` call over ``texts`` (one at a time, after ``warmup``
    untimed calls): ``p50_ms``, ``p95_ms``, ``mean_ms`` and the number of ``texts`` timed."""
    if not texts:
        raise ValueError("no texts to time")
    for text in list(texts)[:warmup]:
        predictor.predict_proba([text])
    times = []
    for text in texts:
        started = time.perf_counter()
        predictor.predict_proba([text])
        times.append((time.perf_counter() - started) * 1000.0)
    times = np.asarray(times)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "mean_ms": float(times.mean()), "texts": float(len(times))}
