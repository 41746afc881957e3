#!/usr/bin/env bash
# Fairness acceptance, from the CLI only (issue 5). Writes run folders under ${OUT:-runs/fairness}.
#  1. hate/offensive model on Davidson et al. (2017), 1 epoch: baseline and counterfactual augmentation;
#     each audited on HateCheck (per target identity) and the Jigsaw templates (per identity term),
#     the mitigated run compared with the baseline.
#  2. sentiment model on SST-2 (8,000 sentences, 1 epoch) audited with trustfm's EEC-style probe.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fairness}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
DATA=../shared/data
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

davidson=(--data "$DATA/davidson2017/labeled_data.csv" --text-column tweet --label-column class
          --max-length 64 --epochs 1 --quiet --set data.split.validation=0.1 --set data.split.test=0.1)
# a run that finished is kept (delete its folder to retrain); a half-written one is trained again
for variant in baseline counterfactual_augmentation; do
  if ! grep -q '"status": "complete"' "$OUT/davidson-$variant/run.json" 2>/dev/null; then
    rm -rf "$OUT/davidson-$variant"
    "$TRUSTFM" train "${davidson[@]}" --set fairness.mitigation=${variant/baseline/none} -o "$OUT/davidson-$variant" --format json > "$OUT/davidson-$variant.train.json"
  fi
done
for probe in hatecheck jigsaw-templates; do
  "$TRUSTFM" audit fairness "$OUT/davidson-baseline" --probe $probe --positive-label 0,1 --format json > /dev/null
  "$TRUSTFM" audit fairness "$OUT/davidson-counterfactual_augmentation" --probe $probe --positive-label 0,1 \
      --compare "$OUT/davidson-baseline" --format json > /dev/null
done
"$TRUSTFM" report "$OUT/davidson-baseline"
"$TRUSTFM" report "$OUT/davidson-counterfactual_augmentation"

python3 - "$OUT" <<'PY'
import csv, random, sys
out = sys.argv[1]
rows = list(csv.reader(open("../shared/data/sst2/train.tsv", encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
picked = random.Random(0).sample(rows[1:], 8000)
with open(f"{out}/sst2-train-8000.tsv", "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
    w.writerow(rows[0]); w.writerows(picked)
PY
if ! grep -q '"status": "complete"' "$OUT/sst2/run.json" 2>/dev/null; then
  rm -rf "$OUT/sst2"
  "$TRUSTFM" train --data "$OUT/sst2-train-8000.tsv" --test-data "$DATA/sst2/dev.tsv" --text-column sentence \
      --max-length 64 --epochs 1 --quiet -o "$OUT/sst2" --format json > "$OUT/sst2.train.json"
fi
"$TRUSTFM" audit fairness "$OUT/sst2" --probe eec-style --positive-label 1 --format json > /dev/null
"$TRUSTFM" report "$OUT/sst2"

# test-split audits (identity-mention groups, counterfactual substitution, representation of the training data)
"$TRUSTFM" audit fairness "$OUT/davidson-baseline" --positive-label 0,1 --format json > /dev/null
"$TRUSTFM" audit fairness "$OUT/davidson-counterfactual_augmentation" --positive-label 0,1 --compare "$OUT/davidson-baseline" --format json > /dev/null
"$TRUSTFM" audit fairness "$OUT/sst2" --positive-label 1 --format json > /dev/null
for run in davidson-baseline davidson-counterfactual_augmentation sst2; do "$TRUSTFM" report "$OUT/$run"; done

# post-processing: per-identity thresholds fitted on one half of each probe, judged on the other half
for probe in jigsaw-templates hatecheck; do
  "$TRUSTFM" audit fairness "$OUT/davidson-baseline" --probe $probe --positive-label 0,1 \
      --postprocess threshold_optimizer --constraint false_positive_rate_parity --format json > /dev/null
done
"$TRUSTFM" report "$OUT/davidson-baseline"
