"""Compression on the SST-2 acceptance model: size, speed, accuracy and per-group cost of every method.

For each method (``trustfm compress``'s defaults: ONNX fp32, ONNX Runtime dynamic int8, torchao int8, a 3-layer
distilled student, 30% of heads and FFN units pruned with a 1-epoch recovery; and ONNX int8 with static
calibration) the child is compared with the fp32
PyTorch parent **in the same run**: the arms are alternated over ``--rounds`` rounds (order reversed every other
round) and each speed ratio is taken within a round. One JSON line per method:

- ``size_mb``: weight files; ``latency_ms_b1``: p50/p95 of one text at a time (tokenisation included), over
  ``--latency-texts`` dev sentences; ``throughput_b32``: dev sentences per second at batch 32;
- ``speedup_b32`` / ``latency_p50_ratio``: parent time / child time per round (median, range);
- ``dev_accuracy`` with the parent's, ``agreement`` with the parent on dev, and the worst-group accuracy change on
  the EEC-style gender/race probe from ``audit compare`` (paired interval).

Usage: python benchmarks/compress.py [--parent runs/sst2-acceptance] [--methods onnx,onnx-int8,...] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _rounds import alternate, ratio_summary  # noqa: E402
from _sst2 import SST2, train_sst2_model  # noqa: E402

METHODS = ("onnx", "onnx-int8", "onnx-int8-static", "torch-int8", "distill", "prune")


def dev_set() -> tuple[list[str], np.ndarray]:
    import csv

    with (SST2 / "dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parent", type=Path, default=Path("runs/sst2-acceptance"))
    parser.add_argument("--out", type=Path, default=Path("runs/compress-bench"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-texts", type=int, default=200)
    args = parser.parse_args()

    import shutil

    from trustfm.compress.compare import compare_runs
    from trustfm.compress.run import CompressionSettings, compress_run
    from trustfm.models.predictor import Predictor

    if not (args.parent / "model" / "trustfm_model.json").exists():
        train_sst2_model(args.parent)
    texts, gold = dev_set()
    singles = texts[: args.latency_texts]
    children = {}
    for method in args.methods.split(","):
        child = args.out / method
        shutil.rmtree(child, ignore_errors=True)
        started = time.perf_counter()
        # onnx-int8-static: the same method with activation ranges calibrated on 256 training texts
        settings = CompressionSettings(method=method.removesuffix("-static"),
                                       calibration="static" if method.endswith("-static") else "dynamic")
        record = compress_run(args.parent, settings=settings, output_dir=child)
        children[method] = (child, record, time.perf_counter() - started)
    predictors = {"parent": Predictor.from_run(args.parent, batch_size=32)}
    predictors.update({m: Predictor.from_run(c, batch_size=32) for m, (c, _, _) in children.items()})
    latencies: dict[str, list[float]] = {name: [] for name in predictors}

    def throughput_arm(name):
        def run() -> float:
            started = time.perf_counter()
            predictors[name].predict_proba(texts)
            return time.perf_counter() - started
        return run

    def latency_arm(name):
        def run() -> float:
            times = []
            for text in singles:
                started = time.perf_counter()
                predictors[name].predict_proba([text])
                times.append(time.perf_counter() - started)
            latencies[name].extend(times)
            return float(np.median(times))
        return run

    for p in predictors.values():  # warm-up: first calls allocate
        p.predict_proba(texts[:64])
    batch = alternate({n: throughput_arm(n) for n in predictors}, args.rounds)
    single = alternate({n: latency_arm(n) for n in predictors}, args.rounds)
    parent_proba = predictors["parent"].predict_proba(texts)
    parent_accuracy = float((parent_proba.argmax(1) == gold).mean())
    parent_size = next(iter(children.values()))[1].parent_size_bytes if children else 0
    print(json.dumps({"benchmark": "compress", "arm": "parent (fp32 PyTorch)", "size_mb": round(parent_size / 1e6, 1),
                      "latency_ms_b1": {"p50": round(1000 * np.percentile(latencies["parent"], 50), 2),
                                        "p95": round(1000 * np.percentile(latencies["parent"], 95), 2)},
                      "throughput_b32": round(len(texts) / float(np.median(batch["parent"])), 1),
                      "dev_accuracy": round(parent_accuracy, 4)}))
    for method, (child, record, seconds) in children.items():
        proba = predictors[method].predict_proba(texts)
        comparison = compare_runs(args.parent, child, probes=["eec-style"], robustness_texts=0, attack_texts=0,
                                  membership_rows=0)
        drop = comparison.worst_group_accuracy_drop
        print(json.dumps({
            "benchmark": "compress", "arm": method, "engine": record.model_extra.get("engine", "torch"),
            "compress_seconds": round(seconds, 1),
            "size_mb": round(record.size_bytes / 1e6, 1),
            "latency_ms_b1": {"p50": round(1000 * np.percentile(latencies[method], 50), 2),
                              "p95": round(1000 * np.percentile(latencies[method], 95), 2)},
            "latency_p50_ratio": ratio_summary(single["parent"], single[method]),
            "throughput_b32": round(len(texts) / float(np.median(batch[method])), 1),
            "speedup_b32": ratio_summary(batch["parent"], batch[method]),
            "dev_accuracy": round(float((proba.argmax(1) == gold).mean()), 4),
            "dev_accuracy_parent": round(parent_accuracy, 4),
            "agreement": round(float((proba.argmax(1) == parent_proba.argmax(1)).mean()), 4),
            # + 0.0: no "-0.0" for an unchanged model
            "worst_group_accuracy_drop": {"value": round(drop.value, 4) + 0.0, "interval": [round(drop.low, 4) + 0.0,
                                                                                             round(drop.high, 4) + 0.0],
                                          "slice": comparison.worst_group_slice} if drop else None,
        }))


if __name__ == "__main__":
    main()
