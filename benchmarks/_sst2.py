"""Shared helpers for the benchmarks: locate ../shared/data and sample SST-2 reproducibly."""

from __future__ import annotations

import csv
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SST2 = SHARED / "sst2"


def sample_sst2_train(n: int, seed: int, out: Path) -> Path:
    """Write ``n`` rows drawn at random (with ``seed``) from SST-2 train.tsv to ``out`` (TSV)."""
    with (SST2 / "train.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    picked = random.Random(seed).sample(body, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(picked)
    return out
