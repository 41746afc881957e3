"""Evidence acceptance on TweetEval hate, from the CLI only: train, audit --all, the probes, OOD, report, gate.

4,000 training tweets (seeded sample) with planted identifiers (names of many
origins, phone numbers, e-mail addresses) in 1 of 10 rows, the official
validation and test splits, ``--task hate_speech`` and a 5% holdout for the
membership audit. Then checks what the evidence issue asks for and prints one
JSON line per check, and a summary line:

- the negation test and the EEC-style probe are "not applicable", with the reason;
- the OOD audit (SST-2 dev as out-of-distribution data) flags a detector whose
  AUROC interval lies below 0.5, if there is one;
- the membership audit documents where its non-members came from;
- no planted identifier is in any file the run wrote;
- ``verify`` passes, and fails on an edited number.

Usage: python benchmarks/tweeteval_evidence.py [--out benchmarks/out/tweeteval-evidence] [--n 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWEETEVAL = ROOT.parent / "shared" / "data" / "tweeteval" / "hate"
SST2_DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
PLANTED = ["Priya Raghunathan", "Oluwasanmi Soyinka", "Nneka Ihejirika", "Gilbert Lemaire", "Kojo Twumasi",
           "+1 691 868 6636", "+44 20 5799 9211", "+1-379-550-2492", "6918686636", "maria.lopez@example.com"]


def trustfm(*args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "trustfm.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and done.returncode != 0:
        raise SystemExit(f"trustfm {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done


def _split(name: str) -> tuple[list[str], list[str]]:
    texts = (TWEETEVAL / f"{name}_text.txt").read_text(encoding="utf-8").split("\n")
    labels = (TWEETEVAL / f"{name}_labels.txt").read_text(encoding="utf-8").split("\n")
    pairs = [(t, y.strip()) for t, y in zip(texts, labels) if t.strip() and y.strip()]
    return [t for t, _ in pairs], [y for _, y in pairs]


def _write(path: Path, texts: list[str], labels: list[str]) -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def check(name: str, passed: bool, **detail) -> bool:
    print(json.dumps({"benchmark": "tweeteval_evidence", "check": name, "passed": passed, **detail}))
    return passed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "tweeteval-evidence")
    parser.add_argument("--n", type=int, default=4000)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    rng = random.Random(0)
    texts, labels = _split("train")
    chosen = sorted(rng.sample(range(len(texts)), args.n))
    train_texts = [texts[i] for i in chosen]
    for k, i in enumerate(range(0, args.n, 10)):  # an identifier in every tenth training row
        train_texts[i] += f" — contact {PLANTED[k % len(PLANTED)]}"
    train = _write(args.out / "train.csv", train_texts, [labels[i] for i in chosen])
    validation = _write(args.out / "validation.csv", *_split("val"))
    test = _write(args.out / "test.csv", *_split("test"))
    run = args.out / "run"
    trustfm("train", "--data", train, "--validation-data", validation, "--test-data", test, "--task", "hate_speech",
            "--max-length", "64", "--epochs", "1", "--set", "data.split.holdout=0.05", "--quiet", "-o", run)
    audits = json.loads(trustfm("audit", "all", run, "--format", "json").stdout)
    status = {a["audit"]: a for a in audits["audits"]}
    ok = []
    robustness = json.loads((run / "results" / "robustness.json").read_text())
    ok.append(check("negation not applicable", "negation" in robustness["skipped"]
                    and "assumes sentiment" in robustness["skipped"]["negation"],
                    reason=robustness["skipped"].get("negation")))
    probe = trustfm("audit", "fairness", run, "--probe", "eec-style", "--positive-label", "1", check=False)
    ok.append(check("eec-style probe not applicable", probe.returncode == 2 and "not applicable" in probe.stderr,
                    exit_code=probe.returncode, message=" ".join(probe.stderr.split())[:300]))
    trustfm("audit", "ood", run, "--ood-data", SST2_DEV, "--ood-text-column", "sentence", check=False)
    ood_file = run / "results" / "ood.json"
    if ood_file.exists():
        ood = json.loads(ood_file.read_text())
        worse = [d["detector"] for d in ood["detectors"] if d["worse_than_chance"]]
        below = [d["detector"] for d in ood["detectors"] if d["auroc"]["value"] < 0.5]
        check("ood worse-than-chance flagged", set(below) >= set(worse),
              detectors={d["detector"]: d["auroc"] for d in ood["detectors"]}, flagged=worse)
    membership = status.get("membership", {})
    result = json.loads((run / "results" / "membership.json").read_text()) if membership.get("status") == "ran" else {}
    ok.append(check("membership non-members documented", bool(result.get("non_members_from")),
                    non_members_from=result.get("non_members_from"),
                    duplicates_removed=result.get("non_member_duplicates_removed"),
                    reference_models_bytes=result.get("reference_models_bytes"), status=membership.get("status")))
    trustfm("report", run)
    gate = trustfm("gate", run, "--policy", ROOT / "examples" / "policy-release.yaml", check=False)
    check("gate", gate.returncode in (0, 2, 4), exit_code=gate.returncode,
          message=" ".join((gate.stderr or gate.stdout).split())[-300:])
    leaked = sorted({value for path in run.rglob("*") if path.is_file()
                     for value in PLANTED if value in path.read_bytes().decode("utf-8", "replace")})
    ok.append(check("no planted identifier in any file the run wrote", not leaked, leaked=leaked))
    verified = trustfm("verify", run / "report.html", check=False)
    ok.append(check("verify passes", verified.returncode == 0, exit_code=verified.returncode))
    print(json.dumps({"benchmark": "tweeteval_evidence", "train_rows": args.n, "checks_passed": sum(ok),
                      "checks": len(ok), "audits": {k: v["status"] for k, v in status.items()}}))


if __name__ == "__main__":
    main()
