"""Behaviour unchanged across a refactor: the same job on an older commit and on this checkout, number by number.

Checks out ``--base`` and ``--head`` (default: the last commit) into git
worktrees (``benchmarks/out/tree-<sha>``), so the working tree can change while
it runs, then for each side runs ``trustfm train CONFIG``, ``trustfm audit RUN --all`` and
``trustfm report RUN`` from the CLI, each side with its own ``src`` on the
path. It compares every number in the two ``report.json`` files (timestamps,
paths, durations, versions and the signature aside; result files renamed
since the base are matched by ``--renamed old=new``) and prints one JSON line.

With ``--rounds N`` (at least 3) it then times ``audit RUN --all`` on each
side, alternating sides each round, and prints the median speed-up and range.

Usage::

    python benchmarks/compare_reports.py --base 9348df2 [--head REV] --config CONFIG.yaml [--rounds 3]
    python benchmarks/compare_reports.py --base 9348df2 --sst2-acceptance --rounds 3   # the SST-2 acceptance run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _rounds import alternate, ratio_summary  # noqa: E402

# leaves that differ between any two runs: when, where, how long, which versions, the signature
VOLATILE = {"generated", "started", "finished", "run_dir", "path", "ledger", "versions", "signature", "seconds",
            "train_seconds", "train_samples_per_second", "kind", "accuracy_change", "html", "json"}


def numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON tree by its path, volatile keys left out."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key not in VOLATILE:
                out.update(numbers(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.update(numbers(value, f"{prefix}[{i}]"))
    elif isinstance(tree, bool):
        out[prefix] = float(tree)
    elif isinstance(tree, (int, float)):
        out[prefix] = float(tree)
    return out


def trustfm(src: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "trustfm.cli", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(src)})
    if done.returncode != 0:
        raise SystemExit(f"trustfm {' '.join(args)} ({src}) exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the commit before the change")
    parser.add_argument("--head", default="HEAD", help="the commit after the change")
    parser.add_argument("--config", type=Path, help="run config both sides train with")
    parser.add_argument("--sst2-acceptance", action="store_true",
                        help="instead of --config: the SST-2 acceptance recipe (8,000 sampled sentences, 1 epoch, "
                             "max_length 64, dev as test)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "compare")
    parser.add_argument("--renamed", action="append", default=["membership_inference=membership"],
                        help="a result file renamed since the base: old=new")
    parser.add_argument("--rounds", type=int, default=0, help="also time audit --all, alternated (0: no timing)")
    args = parser.parse_args()
    if args.sst2_acceptance:
        from _sst2 import SST2, sample_sst2_train

        train = sample_sst2_train(8000, 0, (args.out / "sst2-train-8000-0.tsv").resolve())
        args.config = args.out / "sst2-acceptance.yaml"
        args.config.write_text(json.dumps({
            "data": {"train": str(train), "test": str(SST2 / "dev.tsv"), "text_column": "sentence", "max_length": 64},
            "train": {"epochs": 1}}), encoding="utf-8")
    if args.config is None:
        parser.error("give --config CONFIG.yaml or --sst2-acceptance")
    shas = {side: subprocess.run(["git", "rev-parse", "--short", rev], check=True, capture_output=True, text=True,
                                 cwd=REPO).stdout.strip() for side, rev in (("base", args.base), ("head", args.head))}
    sides = {}
    for side, sha in shas.items():
        worktree = HERE / "out" / f"tree-{sha}"
        if not worktree.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), sha], check=True, cwd=REPO,
                           capture_output=True)
        sides[side] = worktree / "src"
    sha = shas["base"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs = {side: args.out / side for side in sides}
    for side, src in sides.items():
        if not (runs[side] / "model" / "trustfm_model.json").exists():
            runs[side].parent.mkdir(parents=True, exist_ok=True)
            trustfm(src, "train", str(args.config), "-o", str(runs[side]), "--quiet", env=env)
        trustfm(src, "audit", str(runs[side]), "--all", "--format", "json", env=env)
        trustfm(src, "report", str(runs[side]), env=env)
    reports = {side: json.loads((runs[side] / "report.json").read_text(encoding="utf-8")) for side in sides}
    for old_new in args.renamed:
        old, new = old_new.split("=")
        results = reports["base"]["results"]
        if old in results:
            results[new] = results.pop(old)
    # a result file only one side writes (an audit added or removed by the change) is listed, not compared
    files = {side: set(report["results"]) for side, report in reports.items()}
    only = {"base": sorted(files["base"] - files["head"]), "head": sorted(files["head"] - files["base"])}
    for side, names in only.items():
        for name in names:
            reports[side]["results"].pop(name)
    base, head = numbers(reports["base"]), numbers(reports["head"])
    differences = [{"number": k, "base": base.get(k), "head": head.get(k)} for k in sorted(set(base) | set(head))
                   if k not in base or k not in head
                   or not math.isclose(base[k], head[k], rel_tol=1e-9, abs_tol=1e-12)]
    line = {"benchmark": "report_equality", "base": sha, "head": shas["head"], "config": str(args.config), "numbers_compared": len(base),
            "differences": len(differences), "first_differences": differences[:20],
            "result_files_only_in": only}
    if args.rounds:
        def timed(side: str):
            def arm() -> float:
                started = time.perf_counter()
                trustfm(sides[side], "audit", str(runs[side]), "--all", "--format", "json", env=env)
                return time.perf_counter() - started
            return arm

        seconds = alternate({"base": timed("base"), "head": timed("head")}, args.rounds)
        line["audit_all_seconds"] = {side: [round(s, 1) for s in values] for side, values in seconds.items()}
        line["audit_all_speedup"] = ratio_summary(seconds["base"], seconds["head"])
    print(json.dumps(line))


if __name__ == "__main__":
    main()
