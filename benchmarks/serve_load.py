"""Serving under load: trustfm serve against a naive per-request FastAPI service and LitServe, same model, same run.

Each server runs on loopback in its own process; ``wrk`` (Debian's package) drives it with one SST-2 dev
sentence per request (rotating over 200) at 1, 8, 32 and 128 concurrent connections for ``--seconds`` each.
The arms are alternated over ``--rounds`` rounds (order reversed every other round); each ratio is taken within
a round. One JSON line per arm and concurrency (throughput and p50/p95/p99 latency, medians over rounds), then
one per comparison with the median ratio and its range.

Arms: ``trustfm`` (as shipped: API key, the torch model exported to ONNX Runtime at start-up, request log in
SQLite with group commit and PII redaction in batches behind the answers), ``trustfm-torch`` (as shipped, but
``backend: torch``), ``trustfm-hashlog`` (the log keeps salted hashes only: no PII scan at all),
``trustfm-2workers`` (as shipped, ``--workers 2``), ``trustfm-int8`` (as shipped, serving the run's
``trustfm compress --method onnx-int8`` child given by ``--int8-run``), ``naive``, ``litserve`` (the torch
model, as a LitServe user serves it) and ``litserve-onnx`` (LitServe on the same ONNX Runtime graph trustfm
serves) (benchmarks/_serve_baselines.py). An arm with errors or non-2xx answers is reported with its count.

Replicas (``--arms trustfm-pglog,trustfm-shared,trustfm-2replicas``; a throw-away PostgreSQL with durable
commits): ``trustfm-pglog`` is one replica logging to PostgreSQL with the keys file and in-memory limits,
``trustfm-shared`` the same with keys, limits and the extraction watch in PostgreSQL (``state_url``): their ratio
is the cost of the shared state. ``trustfm-2replicas`` is two shared replicas behind nginx
(deploy/nginx/trustfm.conf), on the same machine (the same total CPU) as the one-replica arms.

The redaction runs behind the answers at a lower CPU priority, so under saturation it falls behind. After each
level the benchmark waits until every logged text is redacted and reports ``drain_s`` and ``sustained_rps``:
requests / (load seconds + drain seconds), the rate at which every answered text is also redacted in the log.

Usage: python benchmarks/serve_load.py [--run runs/sst2-acceptance] [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _ops import free_port, postgres_cluster, start_nginx  # noqa: E402
from _sst2 import sst2_dev_sample, train_sst2_model  # noqa: E402

SHARED_ARMS = ("trustfm-pglog", "trustfm-shared", "trustfm-2replicas")

LUA = r"""
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
end
request = function()
  i = (i % #bodies) + 1
  return wrk.format("POST", nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %.3f, "errors": %d, "non2xx": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def start(arm: str, run: Path, port: int, workdir: Path, database: str | None) -> tuple[list, list[int]]:
    """Start ``arm`` listening on ``port``: (its processes, the ports of its trustfm replicas)."""
    if arm == "trustfm-2replicas":
        replicas = [free_port(), free_port()]
        processes = [start_server("trustfm-shared", run, p, workdir, database)[0][0] for p in replicas]
        processes.append(start_nginx(replicas, port, workdir / f"nginx-{port}"))
        _wait_ready(arm, processes[-1], port, "/healthz")
        return processes, replicas
    return start_server(arm, run, port, workdir, database)


def start_server(arm: str, run: Path, port: int, workdir: Path, database: str | None) -> tuple[list, list[int]]:
    python = sys.executable
    if arm == "trustfm-int8":
        run = workdir / "int8"
    if arm.startswith("trustfm"):
        config = workdir / f"{arm}.yaml"
        log_text = "hash" if arm == "trustfm-hashlog" else "redacted"
        workers = 2 if arm == "trustfm-2workers" else 1
        backend = "torch" if arm == "trustfm-torch" else "auto"
        log_url = database if arm in SHARED_ARMS else f"sqlite:///{workdir / (arm + '.db')}"
        state = f"state_url: {database}\n" if arm == "trustfm-shared" else ""
        config.write_text(f"log_text: {log_text}\nrate_limit_per_minute: 100000000\nmax_queue_texts: 100000\n"
                          f"workers: {workers}\nbackend: {backend}\n{state}")
        command = [python, "-m", "trustfm.cli", "serve", str(run), "--port", str(port), "--config", str(config),
                   "--log-url", log_url]
    else:
        command = [python, str(HERE / "_serve_baselines.py"), arm, str(run), str(port)]
    # a session of its own: LitServe's worker processes outlive a terminated parent unless the group is ended
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    ready = "/readyz" if arm.startswith("trustfm") else ("/health" if arm.startswith("litserve") else "/docs")
    _wait_ready(arm, process, port, ready)
    return [process], [port] if arm.startswith("trustfm") else []


def _wait_ready(arm: str, process: subprocess.Popen, port: int, ready: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"{arm} exited: {process.stderr.read()[-1500:] if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{arm} did not start")


def drive(arm: str, port: int, connections: int, seconds: int, bodies: Path, key: str, script: Path,
          replicas: list[int]) -> dict:
    path = "/predict" if arm.startswith("litserve") else "/v1/predict"
    headers = ["-H", "Content-Type: application/json"]
    if arm.startswith("trustfm"):
        headers += ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s",
                          "--timeout", "30s", *headers, "-s", str(script), f"http://127.0.0.1:{port}{path}", "--",
                          str(bodies)], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["throughput"] = result["requests"] / result["seconds"]
    result["drain_s"] = sum(drain(p) for p in replicas)
    result["sustained"] = result["requests"] / (result["seconds"] + result["drain_s"])
    return result


def drain(port: int) -> float:
    """Seconds until the service's request log has redacted every text it holds (its /metrics backlog is 0)."""
    started = time.perf_counter()
    while True:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        backlog = next(float(line.split()[1]) for line in metrics.splitlines()
                       if line.startswith("trustfm_log_redaction_backlog_texts "))
        if backlog == 0:
            return time.perf_counter() - started
        time.sleep(0.05)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's group, then SIGKILL what is left of it."""
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
        time.sleep(0.5)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=Path("runs/sst2-acceptance"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", default="1,8,32,128")
    parser.add_argument("--arms", default="trustfm,trustfm-hashlog,naive,litserve")
    parser.add_argument("--int8-run", type=Path, default=None, help="an onnx-int8 child of --run: adds trustfm-int8")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(postgres_cluster()) if set(args.arms.split(",")) & set(SHARED_ARMS) else None
        run_benchmark(args, database)


def run_benchmark(args, database: str | None) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (Debian: apt-get install wrk)")
    if args.rounds < 3:
        raise SystemExit("use at least 3 rounds")
    if not (args.run / "model" / "trustfm_model.json").exists():
        train_sst2_model(args.run)
    workdir = Path(tempfile.mkdtemp(prefix="trustfm-serve-bench-"))
    run = workdir / "run"
    shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("serving"))
    subprocess.run([sys.executable, "-m", "trustfm.cli", "report", str(run)], check=True, capture_output=True)
    key = subprocess.run([sys.executable, "-m", "trustfm.cli", "serve", "keys", "create", str(run), "--name", "bench"],
                         check=True, capture_output=True, text=True).stdout.strip()
    if database is not None:
        # the same key in the shared store: its id and hash copied, so one key works for every arm
        from trustfm.serve.keys import DatabaseKeyStore, KeyStore

        shared = DatabaseKeyStore(database)
        for record in KeyStore(run / "serving" / "keys.json").records.values():
            shared.records[record["id"]] = dict(record)
            shared._save(record)
        shared.close()
    arms = args.arms.split(",")
    if args.int8_run is not None:
        # the child keeps its parent link; the same key file serves both (copied, hashes only)
        shutil.copytree(args.int8_run, workdir / "int8", ignore=shutil.ignore_patterns("serving"))
        subprocess.run([sys.executable, "-m", "trustfm.cli", "report", str(workdir / "int8")], check=True,
                       capture_output=True)
        shutil.copytree(run / "serving", workdir / "int8" / "serving")
        arms.insert(1, "trustfm-int8")
    texts, _ = sst2_dev_sample(200, 0)
    bodies = {fmt: workdir / f"bodies-{fmt}.jsonl" for fmt in ("texts", "text")}
    bodies["texts"].write_text("".join(json.dumps({"texts": [t]}) + "\n" for t in texts))
    bodies["text"].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    script = workdir / "load.lua"
    script.write_text(LUA)
    levels = [int(c) for c in args.connections.split(",")]
    results: dict[tuple[str, int], list[dict]] = {(a, c): [] for a in arms for c in levels}
    for r in range(args.rounds):
        for arm in (arms if r % 2 == 0 else arms[::-1]):
            port = free_port()
            processes, replicas = start(arm, run, port, workdir, database)
            body = bodies["text" if arm.startswith("litserve") else "texts"]
            try:
                drive(arm, port, 8, 2, body, key, script, replicas)  # warm-up
                for connections in levels:
                    results[(arm, connections)].append(drive(arm, port, connections, args.seconds, body, key, script,
                                                             replicas))
            finally:
                for process in processes:
                    stop_group(process)
    for (arm, connections), rows in results.items():
        print(json.dumps({"benchmark": "serve_load", "arm": arm, "connections": connections,
                          "throughput_rps": round(statistics.median(r["throughput"] for r in rows), 1),
                          "sustained_rps": round(statistics.median(r["sustained"] for r in rows), 1),
                          "drain_s": round(statistics.median(r["drain_s"] for r in rows), 2),
                          "p50_ms": round(statistics.median(r["p50"] for r in rows), 1),
                          "p95_ms": round(statistics.median(r["p95"] for r in rows), 1),
                          "p99_ms": round(statistics.median(r["p99"] for r in rows), 1),
                          "errors": sum(r["errors"] + r["non2xx"] for r in rows), "rounds": len(rows)}))
    pairs = [(mine, other) for mine in arms if mine.startswith("trustfm") and mine != "trustfm-int8"
             for other in arms if not other.startswith("trustfm")]
    pairs += [("trustfm-int8", "trustfm")] if "trustfm-int8" in arms else []
    pairs += [(mine, other) for mine, other in (("trustfm-shared", "trustfm-pglog"),
                                                ("trustfm-2replicas", "trustfm-shared")) if {mine, other} <= set(arms)]
    for mine, other in pairs:
        for connections in levels:
            ours, theirs = results[(mine, connections)], results[(other, connections)]
            ratios = [o["throughput"] / t["throughput"] for o, t in zip(ours, theirs)]
            sustained = [o["sustained"] / t["sustained"] for o, t in zip(ours, theirs)]
            p95 = [o["p95"] / t["p95"] for o, t in zip(ours, theirs)]
            print(json.dumps({"benchmark": "serve_load", "compare": f"{mine} vs {other}", "connections": connections,
                              "throughput_ratio": {"median": round(statistics.median(ratios), 3),
                                                   "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
                              "sustained_ratio": {"median": round(statistics.median(sustained), 3),
                                                  "min": round(min(sustained), 3), "max": round(max(sustained), 3)},
                              "p95_ratio": {"median": round(statistics.median(p95), 3), "min": round(min(p95), 3),
                                            "max": round(max(p95), 3)}}))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
