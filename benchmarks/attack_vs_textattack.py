"""Our DeepWordBug attack against TextAttack's DeepWordBug recipe, same model, same texts, one run.

TextAttack 0.3.10 needs ``transformers<5`` and NLTK's stop-word corpus, so it
lives in its own venv (``benchmarks/.venv-textattack``), built on first use:
torch==2.13.0 first, then textattack, then trustfm itself (editable), so both
sides call the same ``Predictor.predict_proba``. NLTK data cannot be downloaded
here; the venv gets NLTK's English stop-word list written from
``trustfm.audit.attacks.STOPWORDS`` (the same 179 words), so both attacks skip
the same words.

Three pairings. Two on the same inference engine for both tools: ``fp32``
(both query the model in full precision) and ``bf16`` (both query it under
bfloat16 autocast, which is what our attack's search uses by default on CPUs
with bf16 kernels; every flip it finds is judged in fp32). And ``stock``: each
tool as shipped, TextAttack through its own ``HuggingFaceModelWrapper`` (fp32,
every query padded to the tokenizer's 512 tokens) against ``trustfm audit
attack``'s default (``Predictor.fast_predict_proba`` search, fp32 verdicts).

The model is the 8,000-sentence SST-2 run of ``sst2_acceptance.py``
(trained here first if ``--run`` does not exist). Both attacks see the same
``--n`` dev sentences (random sample, ``--sample-seed``). Model loading is
outside both timings. Prints one JSON line.

Usage: python benchmarks/attack_vs_textattack.py [--run runs/sst2-acceptance] [--n 200] [--pairings fp32 bf16 stock]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _sst2 import sst2_dev_sample, train_sst2_model  # noqa: E402

VENV = HERE / ".venv-textattack"


def textattack_python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + ["textattack==0.3.10", "transformers<5"], check=True)
        subprocess.run(pip + ["-e", str(HERE.parent)], check=True)
        (VENV / ".installed").touch()
    from trustfm.audit.attacks.recipes import STOPWORDS

    stopwords = VENV / "nltk_data" / "corpora" / "stopwords" / "english"
    stopwords.parent.mkdir(parents=True, exist_ok=True)
    stopwords.write_text("\n".join(sorted(STOPWORDS)) + "\n", encoding="utf-8")
    return python


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=Path("runs/sst2-acceptance"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--pairings", nargs="+", choices=["fp32", "bf16", "stock"], default=["fp32", "bf16", "stock"])
    args = parser.parse_args()

    import numpy as np

    from trustfm.audit.attacks.recipes import deepwordbug_attack
    from trustfm.models.predictor import Predictor

    if not (args.run / "model").exists():
        train_sst2_model(args.run)
    python = textattack_python()
    texts, labels = sst2_dev_sample(args.n, args.sample_seed)

    runner = Predictor.from_run(args.run)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump({"texts": texts, "labels": labels}, handle)
    env = {**os.environ, "NLTK_DATA": str(VENV / "nltk_data")}
    line = {"benchmark": "attack_vs_textattack", "recipe": "DeepWordBug (Gao et al. 2018)", "texts": args.n,
            "model": str(args.run), "textattack_version": "0.3.10"}
    for pairing in args.pairings:
        # stock: TextAttack as shipped (fp32, padded to 512) against our attack as shipped (its default search
        # precision, verdicts in fp32); fp32 / bf16: both tools on the same inference engine at that precision
        # (fp32 needs no separate search model: the search's own answers are then the verdicts)
        search = {"stock": runner.fast_predict_proba, "fp32": None,
                  "bf16": lambda t: runner.predict_proba(t, precision="bf16")}[pairing]
        ours = deepwordbug_attack(texts, np.array(labels), runner.predict_proba, runner.label_names,
                                  seed=args.sample_seed, bootstrap_samples=0, search_predict_proba=search)
        child = subprocess.run([str(python), str(HERE / "_textattack_child.py"), str(args.run), handle.name,
                                str(args.sample_seed), pairing], check=True, capture_output=True, text=True, env=env)
        theirs = json.loads(child.stdout.strip().splitlines()[-1])
        line[pairing] = {
            "textattack_seconds": round(theirs["seconds"], 2), "trustfm_seconds": round(ours.seconds, 2),
            "speedup": round(theirs["seconds"] / ours.seconds, 2),
            "textattack_success_rate": round(theirs["success_rate"], 4),
            "trustfm_success_rate": round(ours.success_rate.value, 4),
            "success_rate_difference_points": round(100 * (ours.success_rate.value - theirs["success_rate"]), 2),
            "textattack_robust_accuracy": round(theirs["robust_accuracy"], 4),
            "trustfm_robust_accuracy": round(ours.robust_accuracy.value, 4),
            "textattack_mean_queries": round(theirs["mean_queries"], 1),
            "trustfm_mean_queries": round(ours.mean_queries, 1),
            "skipped": {"textattack": theirs["skipped"], "trustfm": ours.skipped},
        }
    os.unlink(handle.name)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
