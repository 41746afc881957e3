"""DP-SGD cost and utility on SST-2 with the default model.

1. Step time with DP / without DP at the same batch size, in one process. The
   same 32-sentence SST-2 batches go in turn through a plain training step and
   through each clipping mode, so load on the shared machine hits all alike:
   - ``bookkeeping``: trustfm's one-backward clipping (the default);
   - ``opacus_hooks``: Opacus per-example gradients (GradSampleModule + DPOptimizer);
   - ``opacus_ghost``: Opacus ghost clipping (GradSampleModuleFastGradientClipping,
     DPLossFastGradientClipping: two backward passes).
   Embeddings and pooler are frozen everywhere (as trustfm's DP runs freeze them),
   so the same parameters train. Every step is a full step: forward, backward,
   clipping, noise, AdamW.
2. SST-2 dev accuracy at epsilon 8 and 3 against non-private training with the
   same number of steps (all 67,349 SST-2 training sentences, 10% held out for
   validation; batch 1,024, 1 epoch = 60 steps, no early stopping; the DP runs
   train the top 2 encoder layers and the head at lr 5e-3, the best of the
   settings tried (see the README); the non-private run has the same batch
   size, epochs and steps with the project's default full fine-tuning and
   learning rate).

Prints one JSON line. Usage: python benchmarks/dp_overhead.py [--steps 30] [--out runs/dp] [--skip-accuracy |
--skip-timing] [--train-sentences all|N] [--batch-size 1024] [--epochs 1] [--epsilons 8 3]
[--dp-learning-rate 5e-3]
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

BATCH = 32
MODES = ("plain", "bookkeeping", "opacus_hooks", "opacus_ghost")
# every run takes every step: early stopping would end the runs after different numbers of steps
DP_TRAINING = {"train.batch_size": 1024, "train.epochs": 1, "train.early_stopping": None}
DP_SETTINGS = {"trainable": "top_layers", "top_layers": 2}
DP_LEARNING_RATE = 5e-3
TRAIN_SENTENCES = None  # all of SST-2 train


def _frozen_model():
    import torch

    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier

    torch.manual_seed(0)
    model, tokenizer = build_classifier(ModelConfig(), ["0", "1"])
    for name, p in model.named_parameters():
        if ".embeddings." in f".{name}" or ".pooler." in f".{name}":
            p.requires_grad_(False)
    model.train()
    return model, tokenizer


def _step_function(mode: str):
    """A model and ``step(batch)`` running one full training step in ``mode``."""
    import torch
    import torch.nn.functional as F

    from trustfm.train.loop import make_adamw

    model, tokenizer = _frozen_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_adamw([{"params": params}], lr=2e-4)
    noise, clip = 1.0, 1.0
    if mode == "plain":
        def step(batch):
            F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    elif mode == "bookkeeping":
        from types import SimpleNamespace

        from trustfm.config.schema import TrainConfig
        from trustfm.train.privacy import DPSGD

        # the shipped callback itself: its clipping, its noise, its gradient assembly
        trainer = SimpleNamespace(model=model, config=TrainConfig(batch_size=BATCH, epochs=1), micro_batch_size=None)
        dp = DPSGD(epsilon=8.0, delta=1e-5, max_grad_norm=clip, n_train=BATCH * 100)
        dp.on_fit_start(trainer)
        dp.noise_multiplier = noise
        dp.on_epoch_start(trainer, 1)

        def step(batch):
            F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["labels"]).backward()
            dp.on_after_backward(trainer, {**batch, "step_rows": len(batch["labels"])})
            dp.on_before_optimizer_step(trainer)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    elif mode == "opacus_hooks":
        import opacus
        from opacus.optimizers import DPOptimizer

        model = opacus.GradSampleModule(model, loss_reduction="mean")
        dp_optimizer = DPOptimizer(optimizer, noise_multiplier=noise, max_grad_norm=clip, expected_batch_size=BATCH)

        def step(batch):
            F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["labels"]).backward()
            dp_optimizer.step()
            dp_optimizer.zero_grad(set_to_none=True)
    else:
        from opacus.grad_sample import GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizerFastGradientClipping
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        model = GradSampleModuleFastGradientClipping(model, max_grad_norm=clip, use_ghost_clipping=True,
                                                     loss_reduction="mean")
        dp_optimizer = DPOptimizerFastGradientClipping(optimizer, noise_multiplier=noise, max_grad_norm=clip,
                                                       expected_batch_size=BATCH, loss_reduction="mean")
        criterion = DPLossFastGradientClipping(model, dp_optimizer, torch.nn.CrossEntropyLoss(), loss_reduction="mean")

        def step(batch):
            criterion(model(batch["input_ids"], batch["attention_mask"]), batch["labels"]).backward()
            dp_optimizer.step()
            dp_optimizer.zero_grad(set_to_none=True)
    return step, tokenizer


def step_times(steps: int) -> dict[str, float]:
    """Mean seconds per full training step for each mode on the same batches."""
    import warnings

    import torch

    from trustfm.data.batching import bucketed_batches, encode_texts, iterate_batches
    from trustfm.data.io import read_table

    warnings.filterwarnings("ignore", message="Full backward hook")
    torch.set_num_threads(os.cpu_count() or 1)
    frame = read_table(sample_sst2_train(2000, 1, Path("runs/dp/step-sample.tsv")))
    runners = {mode: _step_function(mode) for mode in MODES}
    tokenizer = runners["plain"][1]
    encoded = encode_texts(tokenizer, frame["sentence"].tolist(), 64)
    labels = frame["label"].astype(int).to_numpy()
    batches = bucketed_batches(encoded.lengths, batch_size=BATCH, bucket_size=64, seed=0, epoch=1)
    totals = dict.fromkeys(MODES, 0.0)
    for k, (_, batch) in enumerate(iterate_batches(encoded, batches[: steps + 3], 0, labels)):
        for mode, (step, _) in runners.items():
            started = time.perf_counter()
            step(batch)
            if k >= 3:  # warm-up steps are not timed
                totals[mode] += time.perf_counter() - started
    return {mode: total / steps for mode, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/dp"))
    parser.add_argument("--skip-accuracy", action="store_true", help="only the step-time comparison")
    parser.add_argument("--skip-timing", action="store_true", help="only the accuracy comparison")
    parser.add_argument("--train-sentences", type=lambda v: None if v == "all" else int(v), default=TRAIN_SENTENCES,
                        help="SST-2 training sentences drawn at random, or all (67,349)")
    parser.add_argument("--batch-size", type=int, default=DP_TRAINING["train.batch_size"])
    parser.add_argument("--epochs", type=int, default=DP_TRAINING["train.epochs"])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 3.0])
    parser.add_argument("--dp-learning-rate", type=float, default=DP_LEARNING_RATE)
    parser.add_argument("--trainable", default=DP_SETTINGS["trainable"], help="privacy.dp.trainable of the DP runs")
    parser.add_argument("--top-layers", type=int, default=DP_SETTINGS["top_layers"])
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="train.ema_decay of the DP runs (a moving average of the weights; default: none)")
    args = parser.parse_args()
    dp_settings = {"trainable": args.trainable, "top_layers": args.top_layers}
    from trustfm.runs import read_json

    line = {"benchmark": "dp_overhead"}
    if not args.skip_timing:
        seconds = step_times(args.steps)
        line.update({"batch_size": BATCH, "timed_steps": args.steps,
                     "step_seconds": {mode: round(s, 4) for mode, s in seconds.items()},
                     "dp_step_time_ratio": {mode: round(s / seconds["plain"], 3) for mode, s in seconds.items()
                                            if mode != "plain"},
                     "default_clipping": "bookkeeping"})
    if args.skip_accuracy:
        print(json.dumps(line))
        return
    training = {**DP_TRAINING, "train.batch_size": args.batch_size, "train.epochs": args.epochs}
    averaging = {} if args.ema_decay is None else {"train.ema_decay": args.ema_decay}
    runs = {"non_private": training}
    for epsilon in args.epsilons:
        # with averaging the DP runs keep their last checkpoint: its raw weights are scored beside the average
        runs[f"epsilon_{epsilon:g}"] = {**training, **averaging, "train.learning_rate": args.dp_learning_rate,
                                      **({"train.keep_checkpoints": True} if averaging else {}),
                                      "privacy.dp": {"epsilon": float(epsilon), **dp_settings},
                                      "privacy.ledger": str(args.out / "ledger.jsonl")}
    line["training"] = {"train_sentences": args.train_sentences or "all", **training,
                        "dp": {**dp_settings, "learning_rate": args.dp_learning_rate, **averaging}}
    for name, overrides in runs.items():
        run = args.out / name
        if read_json(run / "run.json").get("status") != "complete" if (run / "run.json").exists() else True:
            import shutil

            shutil.rmtree(run, ignore_errors=True)
            train_sst2_model(run, n=args.train_sentences, overrides=overrides)
        accuracy = read_json(run / "results" / "performance.json")["accuracy"]
        steps = read_json(run / "run.json")["training"]["steps"]
        if name == "non_private":
            line["non_private"] = {"dev_accuracy": round(accuracy["value"], 4), "steps": steps,
                                   "dev_accuracy_95ci": [round(accuracy["low"], 4), round(accuracy["high"], 4)]}
            reference = dev_correct(run)  # scored once, paired with every private run
            continue
        privacy = read_json(run / "results" / "privacy.json")
        private = dev_correct(run)
        line[name] = {"dev_accuracy": round(accuracy["value"], 4), "steps": steps,
                      "dev_accuracy_95ci": [round(accuracy["low"], 4), round(accuracy["high"], 4)],
                      "epsilon_spent": round(privacy["epsilon"], 3), "delta": privacy["delta"],
                      "noise_multiplier": round(privacy["noise_multiplier"], 3),
                      "gap_points": round(100 * (line["non_private"]["dev_accuracy"] - accuracy["value"]), 2),
                      "gap_points_95ci": paired_gap_interval(reference, private)}
        if averaging:
            # the same run's last raw weights against its average: a paired comparison, free of the draw's noise
            raw = dev_correct(run, raw_weights=True)
            line[name]["raw_weights"] = {"dev_accuracy": round(float(raw.mean()), 4),
                                         "averaging_gain_points": round(100 * float((private - raw).mean()), 2),
                                         "averaging_gain_points_95ci": paired_gap_interval(private, raw)}
    print(json.dumps(line))


def dev_correct(run: Path, *, raw_weights: bool = False):
    """1.0 where the run's model answers an SST-2 dev sentence right, else 0.0 (shape (872,)); ``raw_weights``:
    the last training step's weights from the kept checkpoint instead of the saved (averaged) model."""
    import csv

    import numpy as np

    from _sst2 import SST2
    from trustfm.audit.context import AuditContext

    with (SST2 / "dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    texts, gold = [r[0] for r in rows], np.asarray([int(r[1]) for r in rows])
    predictor = AuditContext(run).predictor
    if raw_weights:
        import torch

        from trustfm.train.loop import CHECKPOINT_FILE

        saved = torch.load(run / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
        predictor.model.load_state_dict(saved["model"])
    names = [str(n) for n in predictor.label_names]
    predicted = np.asarray([int(names[i]) for i in predictor.predict_proba(texts).argmax(1)])
    return (predicted == gold).astype(float)


def paired_gap_interval(reference, other, *, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the accuracy gap (points, reference minus other) on SST-2 dev, by a paired
    bootstrap over the two models' per-sentence correctness (``dev_correct``) on the same resampled sentences."""
    import numpy as np

    difference = reference - other
    draws = np.random.default_rng(seed).integers(0, len(difference), (resamples, len(difference)))
    means = 100 * difference[draws].mean(axis=1)
    return [round(float(np.quantile(means, 0.025)), 2), round(float(np.quantile(means, 0.975)), 2)]


if __name__ == "__main__":
    main()
