#!/usr/bin/env bash
# Data cleaning on SST-2, from the CLI only (issue 4): check the 8,000-sentence training sample against dev
# (label issues, duplicates, leakage), write the cleaned copy, train on it with the same settings as the plain
# run of benchmarks/robust_training.py, and compare dev accuracy. Prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/cleaning}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
python3 benchmarks/_sst2.py 8000 0 "$OUT/sst2-train-8000-0.tsv"
for mode in remove relabel; do
  flag=$([ $mode = relabel ] && echo --relabel || true)
  "$TRUSTFM" data check "$OUT/sst2-train-8000-0.tsv" --text-column sentence --max-length 64 \
    --test-data ../shared/data/sst2/dev.tsv --fix "$OUT/clean-$mode.tsv" $flag --format json > "$OUT/check-$mode.json"
  for variant in raw $mode; do
    run="$OUT/train-$variant"; file="$OUT/sst2-train-8000-0.tsv"; [ $variant != raw ] && file="$OUT/clean-$variant.tsv"
    grep -q '"status": "complete"' "$run/run.json" 2>/dev/null && continue
    # the raw run is the plain run of benchmarks/robust_training.py (same file content, same settings) when it exists
    if [ $variant = raw ] && grep -q '"status": "complete"' runs/robust-training/plain/run.json 2>/dev/null; then
      rm -rf "$run"; ln -s "$(pwd)/runs/robust-training/plain" "$run"; continue
    fi
    rm -rf "$run"
    "$TRUSTFM" train --data "$file" --test-data ../shared/data/sst2/dev.tsv --text-column sentence --max-length 64 \
      --epochs 1 --quiet -o "$run" --format json > /dev/null
  done
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
acc = lambda v: json.load(open(f"{out}/train-{v}/results/performance.json"))["accuracy"]
check = json.load(open(f"{out}/check-remove.json"))
issues = check["issues"]
line = {"benchmark": "cleaning_sst2", "train_rows": check["rows"], "label_issues": issues["label_issues"],
        "out_of_fold_accuracy": round(issues["out_of_fold_accuracy"], 4), "duplicates": issues["duplicates"],
        "conflicting_duplicates": issues["conflicting_duplicates"], "leaked_dev_rows": issues["leakage"]}
for v in ("raw", "remove", "relabel"):
    a = acc(v)
    line[f"dev_accuracy_{v}"] = [round(a["value"], 4), round(a["low"], 4), round(a["high"], 4)]
line["rows_after_remove"] = check["fix"]["rows_out"]
print(json.dumps(line))
PY
