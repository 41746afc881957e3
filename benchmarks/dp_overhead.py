"""DP-SGD cost and utility on SST-2 with the default model.

1. Step time with DP / without DP at the same batch size, in one process: the
   same 32-sentence batches are fed alternately to a plain training step and to
   a DP step (Opacus per-example hooks + DPOptimizer, as trustfm's DPSGD
   callback sets them up; embeddings frozen in both so the same parameters
   train), so load on the shared machine hits both alike.
2. Dev accuracy at epsilon 8 and 3 against non-private training with the same
   number of steps (8,000 training sentences, 1 epoch, project defaults; the
   non-private run is benchmarks/robust_training.py's plain run when present).

Prints one JSON line. Usage: python benchmarks/dp_overhead.py [--steps 30] [--out runs/dp]
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

from _sst2 import sample_sst2_train, train_sst2_model  # noqa: E402


def step_times(steps: int) -> tuple[float, float]:
    import numpy as np
    import opacus
    import torch
    from opacus.optimizers import DPOptimizer

    from trustfm.config import ModelConfig
    from trustfm.data.batching import bucketed_batches, encode_texts, iterate_batches
    from trustfm.models import build_classifier
    from trustfm.train.loop import batch_loss, make_adamw
    from trustfm.data.io import read_table

    frame = read_table(sample_sst2_train(2000, 1, Path("runs/dp/step-sample.tsv")))
    models = []
    for private in (False, True):
        torch.manual_seed(0)
        model, tokenizer = build_classifier(ModelConfig(), ["0", "1"])
        for name, p in model.named_parameters():
            if ".embeddings." in f".{name}" or ".pooler." in f".{name}":
                p.requires_grad_(False)
        optimizer = make_adamw([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=2e-4)
        if private:
            hooks = opacus.GradSampleModule(model, loss_reduction="mean")
            optimizer = DPOptimizer(optimizer, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=32)
        model.train()
        models.append((model, optimizer))
    encoded = encode_texts(tokenizer, frame["sentence"].tolist(), 64)
    labels = frame["label"].astype(int).to_numpy()
    batches = bucketed_batches(encoded.lengths, batch_size=32, bucket_size=64, seed=0, epoch=1)
    totals = [0.0, 0.0]
    for k, (_, batch) in enumerate(iterate_batches(encoded, batches[: steps + 3], 0, labels)):
        for i, (model, optimizer) in enumerate(models):
            started = time.perf_counter()
            batch_loss(model(batch["input_ids"], batch["attention_mask"]), batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if k >= 3:  # warm-up steps are not timed
                totals[i] += time.perf_counter() - started
    del hooks
    return totals[0] / steps, totals[1] / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/dp"))
    args = parser.parse_args()
    from trustfm.runs import read_json

    plain_s, dp_s = step_times(args.steps)
    line = {"benchmark": "dp_overhead", "batch_size": 32, "timed_steps": args.steps,
            "step_seconds_plain": round(plain_s, 4), "step_seconds_dp": round(dp_s, 4),
            "dp_step_time_ratio": round(dp_s / plain_s, 3), "clipping_mode": "Opacus hooks (per-example gradients)"}
    plain = Path("runs/robust-training/plain")
    if not (plain / "results" / "performance.json").exists():
        plain = train_sst2_model(args.out / "non-private")
    line["non_private_dev_accuracy"] = round(read_json(plain / "results" / "performance.json")["accuracy"]["value"], 4)
    for epsilon in (8, 3):
        run = args.out / f"epsilon-{epsilon}"
        if read_json(run / "run.json").get("status") != "complete" if (run / "run.json").exists() else True:
            import shutil

            shutil.rmtree(run, ignore_errors=True)
            train_sst2_model(run, overrides={"privacy.dp": {"epsilon": float(epsilon)},
                                             "privacy.ledger": str(args.out / "ledger.jsonl")})
        accuracy = read_json(run / "results" / "performance.json")["accuracy"]
        privacy = read_json(run / "results" / "privacy.json")
        line[f"epsilon_{epsilon}"] = {"dev_accuracy": round(accuracy["value"], 4),
                                      "dev_accuracy_95ci": [round(accuracy["low"], 4), round(accuracy["high"], 4)],
                                      "epsilon_spent": round(privacy["epsilon"], 3), "delta": privacy["delta"],
                                      "noise_multiplier": round(privacy["noise_multiplier"], 3),
                                      "gap_points": round(100 * (line["non_private_dev_accuracy"] - accuracy["value"]), 2)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
