"""The alert rules as Prometheus rules, checked by promtool, and run for real: Debian's Prometheus scrapes two
replicas and the monitor, fires the exported rule on a drift, and Alertmanager routes it to a webhook receiver and
then its resolution (deploy/prometheus, deploy/alertmanager, deploy/grafana as shipped)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from conftest import REPO, Background, Server, deploy_file, free_port, make_rows, ops_binary, post_json, run_cli
from monitor.test_alerts import _Receiver

DEPLOY = REPO / "deploy"
WINDOW = 40


def test_the_shipped_rules_are_the_export_of_the_shipped_alerts_and_promtool_passes_them(tmp_path):
    promtool = ops_binary("promtool")
    exported = tmp_path / "trustfm-rules.yml"
    done = run_cli(["monitor", tmp_path, "--alerts", DEPLOY / "prometheus" / "alerts.yaml", "--every", "1m",
                    "--export-rules", exported])
    assert done.returncode == 0, done.stderr
    assert exported.read_text() == (DEPLOY / "prometheus" / "trustfm-rules.yml").read_text()  # not stale
    for args in (["check", "rules", DEPLOY / "prometheus" / "trustfm-rules.yml"],
                 ["test", "rules", DEPLOY / "prometheus" / "trustfm-rules_test.yml"],
                 ["check", "config", DEPLOY / "prometheus" / "prometheus.yml"]):
        checked = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    amtool = ops_binary("amtool")
    checked = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_that_count_windows_need_the_pace_and_names_must_not_collide(tmp_path):
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(yaml.safe_dump({"rules": [{"name": "slow", "metric": "accuracy", "below": 0.8, "windows": 3}]}))
    done = run_cli(["monitor", tmp_path, "--alerts", alerts, "--export-rules", tmp_path / "r.yml"])
    assert done.returncode == 2 and "give the monitor's --every" in done.stderr
    alerts.write_text(yaml.safe_dump({"rules": [{"name": "a-b", "metric": "n", "above": 1},
                                                {"name": "a_b", "metric": "n", "above": 2}]}))
    done = run_cli(["monitor", tmp_path, "--alerts", alerts, "--export-rules", tmp_path / "r.yml"])
    assert done.returncode == 2 and "both become the Prometheus alert TrustfmAB" in done.stderr


def _metric_names(expression: str) -> set[str]:
    """trustfm metric names a PromQL expression reads (label names such as ``trustfm_rule=`` excluded)."""
    return set(re.findall(r"\b(trustfm_[a-z0-9_]+)\b(?!\s*(?:=|!=|=~|!~))", expression))


def _exposed(url: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in httpx.get(url, timeout=10).text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def watched(parent_run, tmp_path_factory):
    """Two replicas (one SQLite log in the run folder: one machine), the monitor on its metrics port,
    Prometheus scraping all three and Alertmanager routing to a receiver; yields what the test drives."""
    prometheus, alertmanager = ops_binary("prometheus"), ops_binary("prometheus-alertmanager")
    folder = tmp_path_factory.mktemp("prometheus")
    run = folder / "run"
    shutil.copytree(parent_run, run)
    assert run_cli(["report", str(run)]).returncode == 0
    key = run_cli(["serve", "keys", "create", str(run), "--name", "app"]).stdout.strip()
    replicas = [Server(run, "--backend", "torch", wait=False) for _ in range(2)]
    receiver = _Receiver()
    alerts = folder / "alerts.yaml"
    alerts.write_text(yaml.safe_dump({"rules": [{"name": "longer-texts", "metric": "length_psi", "above": 1.0,
                                                 "severity": "critical"}]}))
    assert run_cli(["monitor", run, "--alerts", alerts, "--export-rules", folder / "trustfm-rules.yml"]).returncode == 0
    am_port, prom_port, monitor_port = free_port(), free_port(), free_port()
    am_config = deploy_file("alertmanager/alertmanager.yml", folder, {
        "http://127.0.0.1:9200/alerts": receiver.url, "group_wait: 30s": "group_wait: 1s",
        "group_interval: 5m": "group_interval: 1s"})
    started = [Background([alertmanager, f"--config.file={am_config}", f"--storage.path={folder / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          log=folder / "alertmanager.log")]
    for replica in replicas:
        replica.wait_ready()
    prom_config = deploy_file("prometheus/prometheus.yml", folder, {
        "scrape_interval: 15s": "scrape_interval: 1s", "evaluation_interval: 15s": "evaluation_interval: 1s",
        '"127.0.0.1:9093"': f'"127.0.0.1:{am_port}"',
        '"127.0.0.1:8001", "127.0.0.1:8002"': ", ".join(f'"127.0.0.1:{r.port}"' for r in replicas),
        '"127.0.0.1:9101"': f'"127.0.0.1:{monitor_port}"'})
    started.append(Background([prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={folder / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"], log=folder / "prometheus.log"))
    started.append(Background([sys.executable, "-m", "trustfm.cli", "monitor", run, "--window", WINDOW, "--every",
                               "1s", "--alerts", alerts, "--metrics-port", monitor_port], log=folder / "monitor.log"))
    try:
        started[0].wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        started[1].wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
        started[2].wait_http(f"http://127.0.0.1:{monitor_port}/metrics", seconds=60)
        yield dict(run=run, key=key, replicas=replicas, receiver=receiver, prometheus=f"http://127.0.0.1:{prom_port}",
                   alertmanager=f"http://127.0.0.1:{am_port}", monitor=f"http://127.0.0.1:{monitor_port}",
                   logs=[b.log for b in started])
    finally:
        for background in reversed(started):
            background.stop()
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()
        receiver.close()


def _wait(condition, *, seconds: float, what: str, logs=()):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for log in logs)
    raise AssertionError(f"{what} within {seconds} s\n{tails}")


def _send(watched, texts: list[str]) -> None:
    for i in range(0, len(texts), 10):
        replica = watched["replicas"][(i // 10) % 2]  # both replicas write the log
        response = post_json(replica, "/v1/predict", {"texts": texts[i:i + 10]}, key=watched["key"])
        assert response.status_code == 200, response.text


def _notified(watched, status: str) -> bool:
    return any(message["status"] == status and any(a["labels"].get("alertname") == "TrustfmLongerTexts"
                                                   for a in message["alerts"])
               for message in watched["receiver"].received)


def test_a_drift_fires_in_prometheus_reaches_the_receiver_through_alertmanager_and_resolves(watched):
    normal = [r["text"] for r in make_rows(WINDOW, seed=11)]
    normal[0] = "write to jane.doe@example.com, it was great"  # planted: must reach no series and no notification
    _send(watched, normal)
    _wait(lambda: "trustfm_monitor_metric" in _exposed(f"{watched['monitor']}/metrics"), seconds=90,
          what="the monitor published its first window", logs=watched["logs"])
    shifted = [" ".join(["the quarterly filing lists revenue and depreciation schedules"] * 6) + f" item {i}"
               for i in range(WINDOW)]
    _send(watched, shifted)
    _wait(lambda: _notified(watched, "firing"), seconds=90, what="the receiver got the firing alert",
          logs=watched["logs"])
    firing = httpx.get(f"{watched['alertmanager']}/api/v2/alerts", timeout=10).json()
    assert [a["labels"]["trustfm_rule"] for a in firing if a["labels"]["alertname"] == "TrustfmLongerTexts"] == [
        "longer-texts"]
    assert firing[0]["labels"]["severity"] == "critical"
    _send(watched, [r["text"] for r in make_rows(WINDOW, seed=12)])
    _wait(lambda: _notified(watched, "resolved"), seconds=90, what="the receiver got the resolution",
          logs=watched["logs"])
    # Prometheus scraped both replicas and the monitor
    targets = httpx.get(f"{watched['prometheus']}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert sorted(t["labels"]["job"] for t in targets if t["health"] == "up") == [
        "trustfm-monitor", "trustfm-serve", "trustfm-serve"]
    # no personal data in Prometheus' stored series or Alertmanager's notifications
    series = httpx.get(f"{watched['prometheus']}/api/v1/series", params={"match[]": '{__name__=~".+"}'},
                       timeout=10).text
    for planted in ("jane.doe", "example.com"):
        assert planted not in series and planted not in json.dumps(watched["receiver"].received)


def test_the_dashboard_and_rules_read_only_metrics_that_exist(watched):
    exposed = _exposed(f"{watched['replicas'][0].url}/metrics") | _exposed(f"{watched['monitor']}/metrics")
    dashboard = json.loads((DEPLOY / "grafana" / "trustfm-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "trustfm-rules.yml").read_text())
    expressions += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    read = set().union(*map(_metric_names, expressions))
    assert read and read <= exposed, sorted(read - exposed)
    # and Prometheus itself parses every panel's query
    for expression in expressions:
        answer = httpx.get(f"{watched['prometheus']}/api/v1/query", params={"query": expression}, timeout=10)
        assert answer.status_code == 200, (expression, answer.text)
