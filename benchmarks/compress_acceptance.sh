#!/usr/bin/env bash
# Compression acceptance, from the CLI only (issue 18). Writes run folders under ${OUT:-runs/compress-acceptance}.
#  1. the SST-2 acceptance model (8,000 sentences, 1 epoch): compressed with every method; each child compared with
#     its parent on the EEC-style probe (gender and race), reported, and gated by examples/policy-compression.yaml.
#  2. a hate/offensive model on Davidson et al. (2017) with a 5% holdout (so the membership delta applies):
#     int8, compared on HateCheck's target identities (per-group deltas with intervals), reported and gated.
# Prints one JSON line per child: the gate outcome and the headline deltas.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/compress-acceptance}
TRUSTFM=${TRUSTFM:-.venv/bin/trustfm}
PY=${PY:-.venv/bin/python}
DATA=../shared/data
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

summary() {  # child folder, gate exit code
  "$PY" - "$1" "$2" <<'PY'
import json, sys
from pathlib import Path
child, gate_rc = Path(sys.argv[1]), int(sys.argv[2])
cmp = json.loads((child / "results" / "compare.json").read_text())
info = json.loads((child / "run.json").read_text())["compression"]
deltas = {d["metric"]: d for d in cmp["deltas"]}
def d(name):
    x = deltas.get(name)
    return None if x is None else {"parent": round(x["parent"], 4), "child": round(x["child"], 4),
                                   "delta": round(x["delta"]["value"], 4),
                                   "interval": [round(x["delta"]["low"], 4), round(x["delta"]["high"], 4)]}
w = cmp["worst_group_accuracy_drop"]
print(json.dumps({"benchmark": "compress_acceptance", "child": child.name, "method": info["method"],
                  "fidelity_agreement": round(info["fidelity"]["agreement"], 4),
                  "size_mb": round(info["size_bytes"] / 1e6, 1), "agreement": round(cmp["agreement"], 4),
                  "accuracy": d("accuracy"),
                  "worst_group_accuracy_drop": None if w is None else
                  {"value": round(w["value"], 4), "interval": [round(w["low"], 4), round(w["high"], 4)],
                   "slice": cmp["worst_group_slice"]},
                  "membership_auc": d("membership.loss_attack.auc"),
                  "deepwordbug_success": d("attack.deepwordbug.success_rate"),
                  "changed_by_group": cmp["disagreements"]["by_group"],
                  "gate": "PASS" if gate_rc == 0 else "FAIL" if gate_rc == 4 else f"exit {gate_rc}"}))
PY
}

# 1. SST-2
"$PY" benchmarks/_sst2.py 8000 0 "$OUT/sst2-train-8000.tsv"
if ! grep -q '"status": "complete"' "$OUT/sst2/run.json" 2>/dev/null; then
  rm -rf "$OUT/sst2"
  "$TRUSTFM" train --data "$OUT/sst2-train-8000.tsv" --test-data "$DATA/sst2/dev.tsv" --text-column sentence \
      --max-length 64 --epochs 1 --task sentiment --quiet -o "$OUT/sst2" --format json > "$OUT/sst2.train.json"
fi
for method in onnx onnx-int8 torch-int8 distill prune; do
  rm -rf "$OUT/sst2-$method"
  "$TRUSTFM" compress "$OUT/sst2" --method $method -o "$OUT/sst2-$method" --format json > "$OUT/sst2-$method.json"
  "$TRUSTFM" audit compare "$OUT/sst2" "$OUT/sst2-$method" --probe eec-style --positive-label 1 --format json > /dev/null
  "$TRUSTFM" report "$OUT/sst2-$method" > /dev/null
  set +e; "$TRUSTFM" gate "$OUT/sst2-$method" --policy examples/policy-compression.yaml > "$OUT/sst2-$method.gate.txt"
  rc=$?; set -e
  summary "$OUT/sst2-$method" $rc
done

# 2. Davidson, with HateCheck's target identities as the groups
if ! grep -q '"status": "complete"' "$OUT/davidson/run.json" 2>/dev/null; then
  rm -rf "$OUT/davidson"
  "$TRUSTFM" train --data "$DATA/davidson2017/labeled_data.csv" --text-column tweet --label-column class \
      --max-length 64 --epochs 1 --task hate_speech --quiet --set data.split.validation=0.1 \
      --set data.split.test=0.1 --set data.split.holdout=0.05 -o "$OUT/davidson" --format json > "$OUT/davidson.train.json"
fi
rm -rf "$OUT/davidson-int8"
"$TRUSTFM" compress "$OUT/davidson" --method onnx-int8 -o "$OUT/davidson-int8" --format json > "$OUT/davidson-int8.json"
"$TRUSTFM" audit compare "$OUT/davidson" "$OUT/davidson-int8" --probe hatecheck --positive-label 0,1 --format json > /dev/null
"$TRUSTFM" report "$OUT/davidson-int8" > /dev/null
set +e; "$TRUSTFM" gate "$OUT/davidson-int8" --policy examples/policy-compression.yaml > "$OUT/davidson-int8.gate.txt"
rc=$?; set -e
summary "$OUT/davidson-int8" $rc
"$PY" - "$OUT/davidson-int8" <<'PY'
import json, sys
from pathlib import Path
cmp = json.loads((Path(sys.argv[1]) / "results" / "compare.json").read_text())
rows = [d for d in cmp["deltas"] if d["metric"].startswith("probe.hatecheck.target_ident.") and d["metric"].endswith(".accuracy")]
print(json.dumps({"benchmark": "compress_acceptance", "child": "davidson-int8", "per_group_accuracy_delta":
                  {d["metric"].split(".")[3]: [round(d["delta"]["value"], 4), round(d["delta"]["low"], 4),
                                               round(d["delta"]["high"], 4)] for d in rows}}))
PY
