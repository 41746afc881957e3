#!/usr/bin/env bash
# Ensemble on SST-2, from the CLI only (issue 4): three seeds of the default model, each on the same
# 8,000 training sentences for 1 epoch (dev as test split), then the seed-42 run against the average of all three.
# Reuses runs/robust-training/plain (seed 42) when benchmarks/robust_training.py made it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/ensemble}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
python3 benchmarks/_sst2.py 8000 0 "$OUT/sst2-train-8000-0.tsv"
first=runs/robust-training/plain
for seed in 42 43 44; do
  run="$OUT/seed-$seed"
  [ "$seed" = 42 ] && grep -q '"status": "complete"' "$first/run.json" 2>/dev/null && { echo "$first" > "$OUT/seed-42.path"; continue; }
  if ! grep -q '"status": "complete"' "$run/run.json" 2>/dev/null; then
    rm -rf "$run"
    "$TRUSTFM" train --data "$OUT/sst2-train-8000-0.tsv" --test-data ../shared/data/sst2/dev.tsv --text-column sentence \
      --max-length 64 --epochs 1 --seed "$seed" --quiet -o "$run" --format json > /dev/null
  fi
  echo "$run" > "$OUT/seed-$seed.path"
done
"$TRUSTFM" audit ensemble "$(cat "$OUT/seed-42.path")" --member "$(cat "$OUT/seed-43.path")" \
  --member "$(cat "$OUT/seed-44.path")" --attack-texts 200 --format json > "$OUT/ensemble.json"
python3 -c "
import json; r = json.load(open('$OUT/ensemble.json'))
line = {'benchmark': 'ensemble_sst2', 'members': len(r['members']), 'test_texts': r['n'], 'attack_texts': r['attack_texts']}
for k in ('single', 'ensemble'):
    s = r[k]
    line[k] = {'accuracy': round(s['accuracy']['value'], 4), 'accuracy_95ci': [round(s['accuracy']['low'], 4), round(s['accuracy']['high'], 4)],
               'log_loss': round(s['log_loss'], 4), 'ece': round(s['expected_calibration_error'], 4),
               'perturbation_accuracy': round(s['perturbation_accuracy'], 4),
               'deepwordbug_robust_accuracy': round(s['attack_robust_accuracy']['value'], 4)}
print(json.dumps(line))"
