#!/usr/bin/env bash
# Tuning acceptance, from the CLI only (issue 22), on Davidson et al. (2017) hate/offensive tweets: a TPE search
# with median pruning and a fairness constraint is killed during a trial, resumed, and its output run selected
# under the constraint, audited on the test split and gated. Writes under ${OUT:-runs/tune-acceptance}.
#   N=4000 TRIALS=6 bash benchmarks/tune_acceptance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/tune-acceptance}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
N=${N:-4000}
TRIALS=${TRIALS:-6}
export HF_HUB_OFFLINE=1
rm -rf "$OUT" && mkdir -p "$OUT"

python3 - "$OUT" "$N" <<'PY'
import csv, random, sys
out, n = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open("../shared/data/davidson2017/labeled_data.csv", encoding="utf-8")))
picked = random.Random(0).sample(rows, n)
with open(f"{out}/davidson-{n}.csv", "w", encoding="utf-8", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(picked)
PY
cat > "$OUT/tune.yaml" <<YAML
output_dir: study
data: {train: davidson-$N.csv, text_column: tweet, label_column: class, max_length: 64,
       split: {validation: 0.15, test: 0.15}}
tune:
  space:
    train.learning_rate: {log_uniform: [3.0e-5, 1.0e-3]}
    train.epochs: {int: [1, 2]}
    train.batch_size: {choice: [16, 32]}
  trials: $TRIALS
  startup_trials: 2
  constraints: ["fairness.max_fpr_gap <= 0.25"]
  audits: {fairness: {positive_label: "0,1"}}
YAML
cd "$OUT"
TRUSTFM=$(realpath "$OLDPWD/$TRUSTFM")
# 1. tune, and kill the whole process once trial 1 has started
"$TRUSTFM" tune tune.yaml -q > tune-killed.log 2>&1 &
pid=$!
until [ -f study/trials/0001/run.json ]; do sleep 2; kill -0 $pid 2>/dev/null || { echo "tune ended early"; cat tune-killed.log; exit 1; }; done
kill -9 $pid; wait $pid 2>/dev/null || true
echo "killed during trial 1"
# 2. resume it: the killed trial is retried; 3. select under the fairness constraint
"$TRUSTFM" tune tune.yaml --resume --format json > study-resumed.json
"$TRUSTFM" tune tune.yaml --resume --select "max validation.macro_f1 where fairness.max_fpr_gap <= 0.25" -q
# 4. audit the winner on the test split, report and gate it
"$TRUSTFM" audit study/selected --all --format json > audits.json
"$TRUSTFM" report study/selected
cat > policy.yaml <<'YAML'
name: tuned-release
rules:
  - macro_f1 >= 0.6
  - fairness.max_fpr_gap <= 0.25
YAML
"$TRUSTFM" gate study/selected --policy policy.yaml || echo "gate: FAIL (exit $?)"
python3 - <<'PY'
import json
study = json.load(open("study/tune.json"))
print(json.dumps({"benchmark": "tune_acceptance", "data": "davidson2017 sample", "counts": study["counts"],
                  "chosen": study["chosen"]["trial"], "chosen_validation_macro_f1":
                  study["chosen"]["metrics"]["validation.macro_f1"],
                  "chosen_validation_max_fpr_gap": study["chosen"]["metrics"]["fairness.max_fpr_gap"],
                  "test_macro_f1": json.load(open("study/selected/results/performance.json"))["macro_f1"]["value"],
                  "gate": json.load(open("study/selected/results/gate.json"))["passed"]}))
PY
