"""Drift over one window of a million logged predictions: trustfm's monitor against Evidently's DataDriftPreset.

Synthetic log (seeded): a reference of ``--reference`` rows and a window of ``--rows`` rows (1,000,000 by
default), each with a confidence, a predicted class, a text length and a 384-dimensional embedding; the window is
mildly shifted. Both tools judge the same columns:

- **trustfm**: PSI and KS on confidences and lengths, PSI and chi-square on classes (``trustfm.monitor.drift``,
  the functions every monitoring window runs), and the embedding two-sample test (MMD with a 200-permutation
  test on 500 sampled embeddings against the reference's). The reference is sorted once beforehand, as
  ``trustfm train`` does when it saves the profile; that one-off step is timed separately and printed.
- **Evidently** 0.7 (its own environment, ``make evidently``): ``Report([DataDriftPreset(method="psi")])`` over
  confidence, length, class and the 384 embedding columns, the way a user hands it the log; only ``report.run``
  is timed (building the DataFrames is not).

Arms alternate over ``--rounds`` rounds (order reversed every other round); the ratio Evidently ÷ trustfm is taken
within a round. The PSI values of confidence, length and class must agree with Evidently's to 1e-6, and KS with
scipy's (trustfm calls ``scipy.stats.ks_2samp``).

Usage: python benchmarks/monitor_scale.py [--rows 1000000] [--reference 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _rounds import alternate, ratio_summary  # noqa: E402

EVIDENTLY = Path(__file__).resolve().parents[1] / ".venv-evidently" / "bin" / "python"
EVIDENTLY_ARM = """
import json, sys, time
import numpy as np, pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
folder = sys.argv[1]
frames = {}
for side in ("reference", "window"):
    data = np.load(f"{folder}/{side}.npz")
    frame = pd.DataFrame(data["embeddings"], columns=[f"e{i}" for i in range(data["embeddings"].shape[1])])
    frame["confidence"], frame["length"] = data["confidence"], data["length"]
    frame["predicted"] = data["predicted"].astype(str)
    frames[side] = frame
numeric = [c for c in frames["window"].columns if c != "predicted"]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=["predicted"])
current = Dataset.from_pandas(frames["window"], data_definition=definition)
reference = Dataset.from_pandas(frames["reference"], data_definition=definition)
started = time.perf_counter()
snapshot = Report([DataDriftPreset(method="psi")]).run(current, reference)
seconds = time.perf_counter() - started
values = {}
for metric in snapshot.dict()["metrics"]:
    column = metric.get("config", {}).get("column")
    if column in ("confidence", "length", "predicted"):
        values[column] = float(metric["value"])
print(json.dumps({"seconds": seconds, "psi": values}))
"""


def synthetic(rows: int, *, shift: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    predicted = (rng.random(rows) < 0.45 + shift).astype(np.int64)
    confidence = np.clip(rng.beta(6 - 2 * shift, 1.5, rows), 0.5, 1.0)
    length = rng.gamma(3.0, 35.0 * (1 + shift), rows).round()
    embeddings = rng.normal(shift * 0.2, 1.0, size=(rows, 384)).astype(np.float32)
    return {"predicted": predicted, "confidence": confidence, "length": length, "embeddings": embeddings}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not EVIDENTLY.exists():
        raise SystemExit(f"{EVIDENTLY} is missing: run make evidently")

    from scipy.stats import ks_2samp

    from trustfm.monitor.drift import SortedSample, class_chi_square, class_psi, ks, mmd_permutation_test, psi

    reference, window = synthetic(args.reference, shift=0.0, seed=0), synthetic(args.rows, shift=0.1, seed=1)
    folder = Path(tempfile.mkdtemp(prefix="trustfm-monitor-bench-"))
    np.savez(folder / "reference.npz", **reference)
    np.savez(folder / "window.npz", **window)

    started = time.perf_counter()
    profile = {"confidence": SortedSample.of(reference["confidence"]), "length": SortedSample.of(reference["length"]),
               "classes": np.bincount(reference["predicted"], minlength=2) / args.reference,
               "embeddings": reference["embeddings"][np.random.default_rng(0).permutation(args.reference)[:500]]}
    profile_seconds = time.perf_counter() - started
    ours: dict = {}

    def trustfm_arm() -> float:
        started = time.perf_counter()
        ours["psi"] = {"confidence": psi(profile["confidence"], window["confidence"]),
                       "length": psi(profile["length"], window["length"])}
        ours["ks"] = {"confidence": ks(profile["confidence"], window["confidence"]),
                      "length": ks(profile["length"], window["length"])}
        counts = np.bincount(window["predicted"], minlength=2)
        ours["psi"]["predicted"] = class_psi(profile["classes"], counts)
        ours["chi2"] = class_chi_square(profile["classes"], counts)
        sample = np.random.default_rng(1).permutation(args.rows)[:500]
        ours["mmd"] = mmd_permutation_test(profile["embeddings"], window["embeddings"][sample])
        return time.perf_counter() - started

    theirs: dict = {}

    def evidently_arm() -> float:
        done = subprocess.run([str(EVIDENTLY), "-c", EVIDENTLY_ARM, str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        theirs.update(json.loads(done.stdout.strip().splitlines()[-1]))
        return theirs["seconds"]

    seconds = alternate({"trustfm": trustfm_arm, "evidently": evidently_arm}, args.rounds)
    psi_gap = max(abs(ours["psi"][c] - theirs["psi"][c]) for c in ("confidence", "length", "predicted"))
    ks_gap = max(abs(ours["ks"][c][1] - ks_2samp(reference[c], window[c]).pvalue) for c in ("confidence", "length"))
    print(json.dumps({"benchmark": "monitor_scale", "rows": args.rows, "reference_rows": args.reference,
                      "trustfm_s": [round(s, 3) for s in seconds["trustfm"]],
                      "evidently_s": [round(s, 2) for s in seconds["evidently"]],
                      "speedup_vs_evidently": ratio_summary(seconds["evidently"], seconds["trustfm"], 1),
                      "reference_profile_s": round(profile_seconds, 3),
                      "psi": {c: round(v, 6) for c, v in ours["psi"].items()},
                      "evidently_psi": {c: round(v, 6) for c, v in theirs["psi"].items()},
                      "max_psi_difference": psi_gap, "max_ks_p_difference_vs_scipy": ks_gap,
                      "agree_1e-6": bool(psi_gap <= 1e-6 and ks_gap <= 1e-6),
                      "embedding_mmd2_p": [round(ours["mmd"][0], 6), round(ours["mmd"][1], 4)]}))
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
