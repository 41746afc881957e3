"""Federated fine-tuning on SST-2: accuracy against centralised training, one poisoned client under each rule,
client-level DP's epsilon, and (with --torchrun) 2 data-parallel processes against 1.

    python benchmarks/federated_sst2.py --n 2000 --clients 5 --rounds 3

Every arm trains the default model (all-MiniLM-L6-v2) on the same ``--n`` SST-2 training sentences and is scored
on the SST-2 dev set (872 sentences). Centralised training sees the same number of examples as the federation
(rounds x local epochs passes over the data). Accuracy comparisons need no alternation (they do not depend on the
machine's load); one seed, so differences under about a point are noise. Prints one JSON line per result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sst2 import SST2, sample_sst2_train  # noqa: E402


def base_config(train: Path, out: Path, args, **federated):
    from trustfm.config import RunConfig

    return RunConfig.model_validate({
        "seed": args.seed, "output_dir": str(out), "task": "sentiment",
        "data": {"train": str(train), "validation": str(SST2 / "dev.tsv"), "text_column": "sentence",
                 "max_length": 64, "split": {"test": 0.0}},
        "train": {"epochs": args.rounds, "batch_size": 32},
        "federated": {"clients": args.clients, "rounds": args.rounds, "local_epochs": 1,
                      "client_evaluation": "final", **federated},
    })


def federated_accuracy(config) -> tuple[float, dict]:
    from trustfm.federated.run import federate_run
    from trustfm.results import load_result

    started = time.perf_counter()
    result = load_result(federate_run(config, show_progress=False).result("federated"))
    return result.validation_accuracy, {"worst_client_accuracy": result.worst_client_accuracy,
                                        "seconds": round(time.perf_counter() - started, 1)}


def centralised_accuracy(config) -> float:
    from trustfm.train.run import train_run

    paths = train_run(config.model_copy(update={"federated": None}), show_progress=False)
    history = [json.loads(line) for line in paths.metrics_log.read_text().splitlines()]
    epochs = [h for h in history if "validation" in h]
    return epochs[-1]["validation"]["accuracy"]  # the last epoch, as the federation keeps its last round


def torchrun_seconds(train: Path, out: Path, nproc: int, n_epochs: int = 1) -> float:
    """Seconds of the training loop (rank 0's run.json) for ``trustfm train --nproc nproc`` on ``train``."""
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "trustfm.cli", "train", "--data", str(train), "--text-column",
                           "sentence", "--max-length", "64", "--epochs", str(n_epochs), "--quiet", "--nproc",
                           str(nproc), "-o", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads((out / "run.json").read_text())["training"]["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default="fedavg,fedmedian,fedtrimmedavg,krum")
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--torchrun-rounds", type=int, default=3, help="0: skip the torchrun arm")
    parser.add_argument("--only", choices=["all", "federated", "torchrun"], default="all")
    args = parser.parse_args()
    from trustfm.federated.poisoning import poisoning_check
    from trustfm.federated.run import plan_privacy

    work = Path(tempfile.mkdtemp(prefix="trustfm-fed-bench-"))
    os.environ["TRUSTFM_PRIVACY_LEDGER"] = str(work / "ledger.jsonl")  # the DP arm's spend stays with the benchmark
    try:
        train = sample_sst2_train(args.n, args.seed, work / "train.tsv")
        common = {"benchmark": "federated_sst2", "n": args.n, "clients": args.clients, "rounds": args.rounds}
        if args.only in ("all", "torchrun") and args.torchrun_rounds:
            from _rounds import alternate, ratio_summary

            seconds = alternate({"one": lambda: torchrun_seconds(train, work / "tr1", 1),
                                 "two": lambda: torchrun_seconds(train, work / "tr2", 2)}, args.torchrun_rounds)
            print(json.dumps({"benchmark": "federated_sst2", "arm": "torchrun_2_vs_1_process", "n": args.n,
                              "epochs": 1, "seconds_one": [round(s, 1) for s in seconds["one"]],
                              "seconds_two": [round(s, 1) for s in seconds["two"]],
                              "speedup_two_over_one": ratio_summary(seconds["one"], seconds["two"])}), flush=True)
        if args.only == "torchrun":
            return
        central = centralised_accuracy(base_config(train, work / "central", args))
        iid, iid_extra = federated_accuracy(base_config(train, work / "iid", args))
        print(json.dumps({**common, "arm": "iid_vs_centralised", "centralised_accuracy": round(central, 4),
                          "federated_accuracy": round(iid, 4), "gap_points": round(100 * (central - iid), 2),
                          "target_gap_points": 2.0, **iid_extra}), flush=True)
        skewed, skewed_extra = federated_accuracy(base_config(
            train, work / "dirichlet", args, partition={"method": "dirichlet", "alpha": 0.1}))
        print(json.dumps({**common, "arm": "dirichlet_alpha_0.1", "centralised_accuracy": round(central, 4),
                          "federated_accuracy": round(skewed, 4), "gap_points": round(100 * (central - skewed), 2),
                          **skewed_extra}), flush=True)
        check = poisoning_check(base_config(train, work / "iid", args), work / "iid",
                                rules=args.rules.split(","))
        for row in check.rules:
            print(json.dumps({**common, "arm": "one_poisoned_client", "attack": check.attack, "rule": row.rule,
                              "clean_accuracy": round(row.clean_accuracy, 4),
                              "poisoned_accuracy": round(row.poisoned_accuracy, 4),
                              "drop_points": round(100 * row.accuracy_drop, 2),
                              "target": "robust rule within 2 points of its clean run; FedAvg shows the damage"}),
                  flush=True)
        dp = base_config(train, work / "client-dp", args,
                         client_dp={"mode": "server", "noise_multiplier": args.noise_multiplier, "clipping_norm": 1.0})
        private, private_extra = federated_accuracy(dp)
        privacy = plan_privacy(dp)
        print(json.dumps({**common, "arm": "client_level_dp_server", "noise_multiplier": args.noise_multiplier,
                          "clipping_norm": 1.0, "epsilon": round(privacy.client_epsilon, 3),
                          "delta": privacy.client_delta, "accuracy": round(private, 4),
                          "clean_accuracy": round(iid, 4), **private_extra}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
