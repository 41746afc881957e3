"""Shared helpers for the benchmarks: locate ../shared/data and sample SST-2 reproducibly."""

from __future__ import annotations

import csv
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SST2 = SHARED / "sst2"


def sample_sst2_train(n: int | None, seed: int, out: Path) -> Path:
    """Write ``n`` rows drawn at random (with ``seed``) from SST-2 train.tsv to ``out`` (TSV); ``None``: all
    67,349 rows, shuffled."""
    with (SST2 / "train.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    picked = random.Random(seed).sample(body, len(body) if n is None else n)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(picked)
    return out


def train_sst2_model(out: Path, *, n: int | None = 8000, sample_seed: int = 0, overrides: dict | None = None) -> Path:
    """Fine-tune the default model on ``n`` sampled SST-2 training sentences (``None``: all) for 1 epoch (dev as
    test split).

    The project's defaults, nothing tuned; ``overrides`` are extra ``--set``-style config keys.
    Returns the run folder.
    """
    from trustfm.config import load_config
    from trustfm.pipeline import train_and_evaluate

    train = sample_sst2_train(n, sample_seed, out.parent / f"sst2-train-{n or 'all'}-{sample_seed}.tsv")
    config = load_config(None, {
        "data.train": str(train), "data.test": str(SST2 / "dev.tsv"), "data.text_column": "sentence",
        "data.max_length": 64, "train.epochs": 1, "task": "sentiment", "output_dir": str(out), **(overrides or {}),
    })
    return train_and_evaluate(config, show_progress=False).root


def sst2_dev_sample(n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` SST-2 dev sentences and labels drawn at random with ``seed``."""
    with (SST2 / "dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    picked = random.Random(seed).sample(rows, n)
    return [r[0] for r in picked], [int(r[1]) for r in picked]


if __name__ == "__main__":  # for the shell benchmarks: python benchmarks/_sst2.py N SEED OUT.tsv
    import sys

    sample_sst2_train(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
