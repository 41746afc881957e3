"""TPE with median pruning against random search, same trial budget, on SST-2: who finds a good model sooner?

    python benchmarks/tune_sst2.py --n 4000 --trials 20 --rounds 3

Each arm runs ``trustfm tune``'s study (``tune_study``) on the same ``--n`` SST-2 training sentences with the SST-2
dev set (872 sentences) as the validation split every trial is judged on, over the same space (learning rate,
batch size, epochs, warm-up). The arms alternate within each round (the order reverses every other round) and
each round uses its own seed, shared by both arms (paired: TPE's first ``startup_trials`` trials are random
draws, the same ones random search makes, so the arms differ only in what TPE and pruning do after them). Per arm:
the best dev macro-F1, wall time, trials pruned, and (seconds, value) per trial in the order trials ended. The
comparison the issue sets: the wall time TPE + pruning needs to reach random search's best dev macro-F1, divided by random search's
whole wall time (target <= 0.5; a round where TPE never reaches it counts as a miss, ratio > 1). Prints one JSON
line per round and a summary line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sst2 import SST2, sample_sst2_train  # noqa: E402

SPACE = {
    "train.learning_rate": {"log_uniform": [1.0e-5, 3.0e-3]},
    "train.batch_size": {"choice": [16, 32, 64]},
    "train.epochs": {"int": [1, 3]},
    "train.warmup_ratio": {"uniform": [0.0, 0.2]},
}


def run_arm(train: Path, out: Path, *, sampler: str, pruner: str, trials: int, seed: int) -> dict:
    from trustfm.config import load_config
    from trustfm.tune.study import tune_study

    config = load_config(None, {
        "seed": seed, "output_dir": str(out), "task": "sentiment",
        "data.train": str(train), "data.validation": str(SST2 / "dev.tsv"), "data.text_column": "sentence",
        "data.max_length": 64, "data.split.test": 0.0,
        "tune": {"space": SPACE, "trials": trials, "sampler": sampler, "pruner": pruner, "startup_trials": 5},
    })
    ended: list[tuple[float, float | None]] = []  # (seconds since start, value) per trial in the order it ended
    started = time.perf_counter()
    result = tune_study(config, show_progress=False, on_trial=lambda record, _: ended.append(
        (time.perf_counter() - started, record.values[0] if record.values else None)))
    wall = time.perf_counter() - started
    values = [v for _, v in ended if v is not None]
    return {"wall_s": round(wall, 1), "best_macro_f1": max(values) if values else None,
            "pruned": result.counts.get("pruned", 0), "complete": result.counts.get("complete", 0),
            "ended": [(round(s, 1), v) for s, v in ended]}


def seconds_to_reach(ended: list[tuple[float, float | None]], target: float) -> float | None:
    """When the arm's best-so-far first reached ``target`` (None: never)."""
    for seconds, value in ended:
        if value is not None and value >= target:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="SST-2 training sentences")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.rounds < 3:
        raise SystemExit("use at least 3 rounds")
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    train = sample_sst2_train(args.n, 0, work / f"sst2-{args.n}.tsv")
    arms = {"tpe_median_pruning": ("tpe", "median"), "random": ("random", "none")}
    rounds = []
    try:
        for r in range(args.rounds):
            order = list(arms) if r % 2 == 0 else list(arms)[::-1]
            outcome = {}
            for name in order:
                sampler, pruner = arms[name]
                outcome[name] = run_arm(train, work / f"round{r}-{name}", sampler=sampler, pruner=pruner,
                                        trials=args.trials, seed=r)
                shutil.rmtree(work / f"round{r}-{name}" / "trials", ignore_errors=True)
            tpe, rnd = outcome["tpe_median_pruning"], outcome["random"]
            reach = seconds_to_reach(tpe["ended"], rnd["best_macro_f1"])
            ratio = (reach / rnd["wall_s"]) if reach is not None else None
            line = {"benchmark": "tune_sst2", "round": r, "seed": r, "n": args.n, "trials": args.trials,
                    "order": order, **outcome,
                    "tpe_seconds_to_random_best": None if reach is None else round(reach, 1),
                    "time_to_random_best_over_random_wall": None if ratio is None else round(ratio, 3)}
            print(json.dumps(line), flush=True)
            rounds.append(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [r["time_to_random_best_over_random_wall"] for r in rounds]
    reached = [x for x in ratios if x is not None]
    summary = {
        "benchmark": "tune_sst2", "summary": True, "rounds": len(rounds), "n": args.n, "trials": args.trials,
        "tpe_reached_random_best_in_rounds": len(reached),
        # a round where TPE never reached random's best counts as a miss (above every ratio that reached it)
        "time_to_random_best_over_random_wall": {
            "median": (statistics.median([x if x is not None else float("inf") for x in ratios])
                       if ratios else None),
            "min": min(reached) if reached else None, "max": max(reached) if len(reached) == len(ratios) else None,
            "per_round": ratios},
        "target": "<= 0.5",
        "best_macro_f1": {arm: [round(r[arm]["best_macro_f1"], 4) for r in rounds] for arm in arms},
        "wall_s": {arm: [r[arm]["wall_s"] for r in rounds] for arm in arms},
        "wall_ratio_tpe_over_random": {"median": round(statistics.median(
            r["tpe_median_pruning"]["wall_s"] / r["random"]["wall_s"] for r in rounds), 3)},
        "pruned": [r["tpe_median_pruning"]["pruned"] for r in rounds],
    }
    if summary["time_to_random_best_over_random_wall"]["median"] == float("inf"):
        summary["time_to_random_best_over_random_wall"]["median"] = None
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
