"""Where ``trustfm data check`` spends its time on a large file (default: all of SST-2 train, 67,349 rows).

Times each phase the command runs, in the same process: reading and
validating the file, tokenising every text (lengths before truncation), embedding
the model-checked rows with the pretrained encoder, the out-of-fold logistic
regression plus cleanlab and the duplicate search. Run with ``--model-sample 0``
to embed every row. Prints one JSON line. There is no reference tool to compare
with here: the figure is our own, and the machine is shared, so read the split
between phases rather than the absolute seconds.

Usage: python benchmarks/data_check_phases.py [--data ../shared/data/sst2/train.tsv] [--model-sample 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sst2/train.tsv"))
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--model-sample", type=int, default=8000)
    args = parser.parse_args()
    import numpy as np
    from transformers import AutoTokenizer

    from trustfm.audit.data_quality.issues import embed, find_issues
    from trustfm.config.schema import DataConfig
    from trustfm.data.batching import encode_texts
    from trustfm.data.prepare import load_labelled
    from trustfm.data.validate import label_order
    from trustfm.models.loading import resolve_model_dir

    seconds = {}
    start = time.perf_counter()
    part = load_labelled(Path(args.data), DataConfig(text_column=args.text_column))
    seconds["read_and_validate"] = time.perf_counter() - start

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("default"), local_files_only=True)
    encoded = encode_texts(tokenizer, part.texts, 128)
    seconds["tokenise_all"] = time.perf_counter() - start

    positions = None
    if args.model_sample and len(part) > args.model_sample:
        positions = np.sort(np.random.default_rng(0).choice(len(part), size=args.model_sample, replace=False))
    texts = part.texts if positions is None else [part.texts[i] for i in positions]
    start = time.perf_counter()
    features = embed(texts, max_length=128)
    seconds["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    findings = find_issues(part.texts, part.labels, part.rows, features, label_order(part.labels),
                           model_positions=positions)
    seconds["label_issues_and_duplicates"] = time.perf_counter() - start
    print(json.dumps({"benchmark": "data_check_phases", "file": args.data, "rows": len(part),
                      "model_rows": len(texts), "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      "total_seconds": round(sum(seconds.values()), 1),
                      "embedded_texts_per_second": round(len(texts) / seconds["embed"], 1),
                      "max_tokens_before_truncation": int(encoded.full_lengths.max()),
                      "label_issues": len(findings.label_issues), "duplicates": len(findings.duplicates)}))


if __name__ == "__main__":
    main()
