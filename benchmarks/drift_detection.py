"""Does monitoring catch a real shift, and how often does it cry wolf? The SST-2 model served on loopback.

``trustfm serve`` runs the SST-2 acceptance model (its own process, the default redacted SQLite log); the
benchmark replays traffic through the HTTP API in three phases, then runs ``trustfm monitor`` (windows of
``--window`` answers) with the rules below:

1. **null**: ``--null-windows`` windows of SST-2 training phrases the model never saw, drawn like its validation
   rows (the reference profile's rows): every alert here is a false alert;
2. **switch**: ``--shift-windows`` windows of TweetEval hate-speech tweets (../shared/data): a new domain;
3. **label shift**: SST-2 dev sentences, negatives only, each answer sent its true label on ``/v1/feedback``;
   ``monitor --reaudit`` then measures accuracy on this labelled production traffic.

Alert rules (``--rules``): ``pvalue`` (default; the tests' p-values, as ``examples/alerts.yaml``) or ``psi``
(PSI above the customary 0.2). Reports: false alerts per 100 null windows (target ≤ 5), windows from the switch to the first alert, per rule
and overall, and the re-audit's accuracy on the labelled shifted traffic against scikit-learn's on the same
answers (they must be equal) and against the model's test accuracy.

Usage: python benchmarks/drift_detection.py [--run runs/sst2-acceptance] [--window 100] [--null-windows 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sst2 import SHARED, SST2  # noqa: E402

# two rule sets over the same four signals: PSI above the customary 0.2, or the tests' p-values (the shipped
# examples/alerts.yaml); each needs two windows in a row
RULE_SETS = {
    "psi": {"rules": [
        {"name": "prediction-drift", "metric": "prediction_psi", "above": 0.2, "windows": 2},
        {"name": "confidence-drift", "metric": "confidence_psi", "above": 0.2, "windows": 2},
        {"name": "length-drift", "metric": "length_psi", "above": 0.2, "windows": 2},
        {"name": "embedding-drift", "metric": "embedding_mmd_p", "below": 0.01, "windows": 2}]},
    "pvalue": {"rules": [
        {"name": "prediction-drift", "metric": "prediction_chi2_p", "below": 0.001, "windows": 2},
        {"name": "confidence-drift", "metric": "confidence_ks_p", "below": 0.001, "windows": 2},
        {"name": "length-drift", "metric": "length_ks_p", "below": 0.001, "windows": 2},
        {"name": "embedding-drift", "metric": "embedding_mmd_p", "below": 0.01, "windows": 2}]},
}


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trustfm.cli", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def sst2_rows(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(r[0], int(r[1])) for r in rows]


def main() -> None:
    import httpx
    from sklearn.metrics import accuracy_score

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=Path("runs/sst2-acceptance"))
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--null-windows", type=int, default=100)
    parser.add_argument("--shift-windows", type=int, default=10)
    parser.add_argument("--label-shift-windows", type=int, default=4)
    parser.add_argument("--rules", choices=sorted(RULE_SETS), default="pvalue")
    parser.add_argument("--keep", type=Path, default=None, help="keep the monitored run here (with its report)")
    args = parser.parse_args()

    import yaml

    work = Path(tempfile.mkdtemp(prefix="trustfm-drift-bench-"))
    run = work / "run"
    shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("serving", "monitoring", "checkpoints"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert cli("report", run).returncode == 0
    key = cli("serve", "keys", "create", run, "--name", "bench").stdout.strip()
    port = 18000 + random.Random().randrange(2000)
    server = subprocess.Popen([sys.executable, "-m", "trustfm.cli", "serve", str(run), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    headers = {"Authorization": f"Bearer {key}"}
    client = httpx.Client(timeout=120, headers=headers)

    def send(texts: list[str], truth: list[str] | None = None) -> list[str]:
        said = []
        for start in range(0, len(texts), 50):
            body = client.post(f"{url}/v1/predict", json={"texts": texts[start:start + 50]}).json()
            said += [p["label"] for p in body["predictions"]]
            if truth is not None:
                for position, label in enumerate(truth[start:start + 50]):
                    done = client.post(f"{url}/v1/feedback", json={"request_id": body["request_id"],
                                                                   "position": position, "label": label})
                    assert done.status_code == 201, done.text
        return said

    used = {text for text, _ in sst2_rows(Path(config["data"]["train"]))}
    unseen = [text for text, _ in sst2_rows(SST2 / "train.tsv") if text not in used]
    rng = random.Random(0)
    n = args.window
    started = time.perf_counter()
    send(rng.sample(unseen, args.null_windows * n))
    tweets = (SHARED / "tweeteval" / "hate" / "test_text.txt").read_text(encoding="utf-8").splitlines()
    send(rng.sample(tweets, args.shift_windows * n))
    label_names = json.loads((run / "run.json").read_text())["label_names"]
    negatives = [(t, label_names[y]) for t, y in sst2_rows(SST2 / "dev.tsv") if y == 0]
    picked = rng.sample(negatives, min(len(negatives), args.label_shift_windows * n))
    said = send([t for t, _ in picked], [y for _, y in picked])
    replay_seconds = time.perf_counter() - started
    server.terminate()
    server.wait(timeout=120)  # a clean stop commits and redacts everything logged

    rules = work / "alerts.yaml"
    RULES = RULE_SETS[args.rules]
    rules.write_text(yaml.safe_dump(RULES))
    started = time.perf_counter()
    done = cli("monitor", run, "--window", n, "--alerts", rules, "--reaudit", "--format", "json")
    monitor_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    result = json.loads(done.stdout)
    ends = [w["end"] for w in result["windows"]]
    null_ends = set(ends[:args.null_windows])
    switch = args.null_windows
    fired = [a for a in result["alerts"] if a["status"] == "firing"]
    false_alerts = [a for a in fired if a["window_end"] in null_ends]

    def first_after_switch(rule: str | None) -> int | None:
        hits = [ends.index(a["window_end"]) - switch + 1 for a in fired
                if (rule is None or a["rule"] == rule) and ends.index(a["window_end"]) >= switch]
        return min(hits) if hits else None

    reaudit = result["reaudit"]
    test_accuracy = json.loads((run / "results" / "performance.json").read_text())["accuracy"]["value"]
    null_psi = sorted(w["prediction_psi"] for w in result["windows"][:switch])
    print(json.dumps({
        "benchmark": "drift_detection", "rules": args.rules, "window": n, "null_windows": args.null_windows,
        "false_alerts_per_100_windows": round(100 * len(false_alerts) / args.null_windows, 2),
        "false_alerts_by_rule": {r["name"]: sum(a["rule"] == r["name"] for a in false_alerts) for r in RULES["rules"]},
        "windows_to_first_alert_after_switch": first_after_switch(None),
        "windows_to_first_alert_by_rule": {r["name"]: first_after_switch(r["name"]) for r in RULES["rules"]},
        "null_prediction_psi_p95": round(null_psi[int(0.95 * (len(null_psi) - 1))], 4),
        "reaudit": {"labelled_answers": reaudit["n"], "accuracy": reaudit["performance"]["accuracy"],
                    "sklearn_accuracy_same_answers": accuracy_score([y for _, y in picked], said),
                    "model_test_accuracy": test_accuracy},
        "replay_seconds": round(replay_seconds, 1), "monitor_seconds": round(monitor_seconds, 1),
    }))
    if args.keep is not None:
        shutil.copytree(run, args.keep)
        cli("report", args.keep)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
