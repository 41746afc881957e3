"""Robust training on SST-2: what each method buys in robust accuracy and costs in clean accuracy.

Trains the default model on the same 8,000 SST-2 sentences for 1 epoch with the
project's defaults, once plain and once per robust-training method, then scores
each on SST-2 dev: clean accuracy (all 872), the perturbation suite's mean
accuracy over the typo/Unicode invariance tests (300 texts), and robust
accuracy under DeepWordBug and HotFlip (200 texts). Runs that finished are
kept (delete a folder to retrain). One JSON line per variant.

Usage: python benchmarks/robust_training.py [--out runs/robust-training] [--variants plain,fgm,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sst2 import train_sst2_model  # noqa: E402

VARIANTS = {
    "plain": {},
    "fgm": {"robustness.adversarial_training": {"method": "fgm", "epsilon": 0.05}},
    "pgd": {"robustness.adversarial_training": {"method": "pgd", "epsilon": 0.05, "steps": 2}},
    "freelb": {"robustness.adversarial_training": {"method": "freelb", "epsilon": 0.05, "steps": 2}},
    "embedding_noise": {"robustness.embedding_noise": 0.1},
    "perturbation_augmentation": {"robustness.augmentation": {"share": 0.5}},
}
NOISE_TESTS = ("typo_swap", "typo_insert", "typo_delete", "typo_keyboard", "homoglyph", "zero_width")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("runs/robust-training"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    from trustfm.audit.attacks.plugin import audit_attacks_run
    from trustfm.audit.robustness.plugin import audit_robustness_run
    from trustfm.runs import read_json

    for name in args.variants.split(","):
        run = args.out / name
        info = read_json(run / "run.json") if (run / "run.json").exists() else {}
        if info.get("status") != "complete":
            import shutil

            shutil.rmtree(run, ignore_errors=True)
            train_sst2_model(run, overrides=VARIANTS[name])
            info = read_json(run / "run.json")
        clean = read_json(run / "results" / "performance.json")["accuracy"]
        suite = audit_robustness_run(run, max_texts=300)["robustness"]
        noise = [t.accuracy.value for t in suite.tests if t.name in NOISE_TESTS]
        attacks = {a.attack: a for a in audit_attacks_run(run, max_texts=200)["attacks"].attacks}
        print(json.dumps({
            "benchmark": "robust_training_sst2", "variant": name, "settings": VARIANTS[name],
            "train_seconds": round(info["training"]["train_seconds"], 1),
            "clean_accuracy": round(clean["value"], 4),
            "clean_accuracy_95ci": [round(clean["low"], 4), round(clean["high"], 4)],
            "perturbation_accuracy_mean": round(sum(noise) / len(noise), 4),
            "deepwordbug_robust_accuracy": round(attacks["deepwordbug"].robust_accuracy.value, 4),
            "deepwordbug_success_rate": round(attacks["deepwordbug"].success_rate.value, 4),
            "hotflip_robust_accuracy": round(attacks["hotflip"].robust_accuracy.value, 4),
            "hotflip_success_rate": round(attacks["hotflip"].success_rate.value, 4),
        }), flush=True)


if __name__ == "__main__":
    main()
