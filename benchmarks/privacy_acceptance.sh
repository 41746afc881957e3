#!/usr/bin/env bash
# Privacy acceptance, from the CLI only (issue 3), on SST-2 with the default model:
#  1. plant Faker PII into 8,000 SST-2 training sentences (one in ten), scan and redact the file;
#  2. DP fine-tune at epsilon 8 on the planted file with privacy.redact on (top 2 layers + head, lr 5e-3,
#     batch 256, 3 epochs: benchmarks/dp_overhead.py's recipe uses all 67k sentences at batch 1,024, about
#     3 points better at several times the training time);
#  3. membership-inference audit; the report shows PII counts, epsilon spent, ledger, MIA AUC and empirical epsilon.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/privacy}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
export HF_HUB_OFFLINE=1 TRUSTFM_PRIVACY_LEDGER=${TRUSTFM_PRIVACY_LEDGER:-$OUT/ledger.jsonl}
mkdir -p "$OUT"
.venv/bin/python - "$OUT" <<'PY'
import csv, random, sys
sys.path.insert(0, "benchmarks")
from pathlib import Path
from faker import Faker
from _sst2 import sample_sst2_train
out = Path(sys.argv[1])
path = sample_sst2_train(8000, 0, out / "sst2-train-8000-0.tsv")
rows = list(csv.reader(path.open(encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
Faker.seed(0); fake = Faker("en_US"); random.seed(0)
makers = [fake.email, fake.phone_number, fake.credit_card_number, fake.iban, fake.ipv4, fake.ssn, fake.name, fake.city]
for row in rows[1::10]:
    row[0] = f"{row[0]} ( contact {random.choice(makers)()} )"
with (out / "sst2-planted.tsv").open("w", encoding="utf-8", newline="") as f:
    csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar="\x00", lineterminator="\n").writerows(rows)
PY
"$TRUSTFM" data scan "$OUT/sst2-planted.tsv" --column sentence --format json > "$OUT/scan.json"
"$TRUSTFM" data redact "$OUT/sst2-planted.tsv" --column sentence -o "$OUT/sst2-redacted.tsv" --mode placeholder --format json > "$OUT/redact.json"
run="$OUT/dp-epsilon-8"
if ! grep -q '"status": "complete"' "$run/run.json" 2>/dev/null; then
  rm -rf "$run"
  "$TRUSTFM" train --data "$OUT/sst2-planted.tsv" --test-data ../shared/data/sst2/dev.tsv --text-column sentence \
    --max-length 64 --epochs 3 --quiet --set privacy.redact=true --set privacy.dp.epsilon=8 \
    --set privacy.dp.trainable=top_layers --set train.batch_size=256 --set train.learning_rate=5e-3 \
    --set privacy.total_epsilon=20 -o "$run" --format json > /dev/null
fi
"$TRUSTFM" audit membership "$run" --format json > "$OUT/mia.json"
"$TRUSTFM" report "$run" > /dev/null
.venv/bin/python - "$OUT" "$run" <<'PY'
import json, sys
out, run = sys.argv[1], sys.argv[2]
scan = json.load(open(f"{out}/scan.json")); mia = json.load(open(f"{out}/mia.json"))
privacy = json.load(open(f"{run}/results/privacy.json")); perf = json.load(open(f"{run}/results/performance.json"))
html = open(f"{run}/report.html", encoding="utf-8").read()
print(json.dumps({"benchmark": "privacy_acceptance", "planted_found": scan["counts"]["sentence"],
    "dev_accuracy": round(perf["accuracy"]["value"], 4), "epsilon_spent": round(privacy["epsilon"], 3),
    "delta": privacy["delta"], "ledger_dataset_epsilon": round(privacy["dataset_epsilon_spent"], 3),
    "mia": {a["attack"]: {"auc": round(a["auc"]["value"], 4), "tpr_at_1pct_fpr": round(a["tpr_at_1pct_fpr"]["value"], 4),
                          "empirical_epsilon_lower_bound": round(a["empirical_epsilon_lower_bound"], 3)} for a in mia["attacks"]},
    "report_shows": {k: k_html in html for k, k_html in {"pii_counts": "Personal data redacted before training",
                     "epsilon": "DP-SGD", "ledger": "Privacy ledger", "mia": "Membership inference"}.items()}}))
PY
