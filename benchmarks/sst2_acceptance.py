"""Acceptance run: the default model on 8,000 SST-2 training sentences, 1 epoch, evaluated on all of dev.

Uses the project's default hyper-parameters (nothing tuned here) through the
same entry point as ``trustfm train``. Prints one JSON line with dev accuracy
(and its bootstrap interval), macro-F1, wall time and training throughput.

Usage: python benchmarks/sst2_acceptance.py [--n 8000] [--sample-seed 0] [--out runs/sst2-acceptance]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sst2 import train_sst2_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/sst2-acceptance"))
    args = parser.parse_args()

    from trustfm.runs import RunPaths, read_json

    shutil.rmtree(args.out, ignore_errors=True)
    started = time.perf_counter()
    paths = RunPaths(train_sst2_model(args.out, n=args.n, sample_seed=args.sample_seed))
    wall = time.perf_counter() - started
    result = read_json(paths.result("performance"))
    info = read_json(paths.run_info)
    print(json.dumps({
        "benchmark": "sst2_acceptance",
        "train_sentences": args.n,
        "sample_seed": args.sample_seed,
        "dev_rows": result["n"],
        "dev_accuracy": round(result["accuracy"]["value"], 4),
        "dev_accuracy_95ci": [round(result["accuracy"]["low"], 4), round(result["accuracy"]["high"], 4)],
        "dev_macro_f1": round(result["macro_f1"]["value"], 4),
        "wall_seconds": round(wall, 1),
        "train_samples_per_s": round(info["training"]["train_samples_per_second"], 1),
    }))


if __name__ == "__main__":
    main()
