"""Alert rules: validation with suggestions, deduplication, resolution, cool-down, and webhook delivery to a real
HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trustfm.errors import ConfigError
from trustfm.monitor.alerts import AlertConfig, Webhook, deliver, load_alert_config, post_webhook, step_alerts


def _windows(values, metric="prediction_psi"):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, value in enumerate(values):
        yield (start + timedelta(minutes=10 * i)).isoformat(), (start + timedelta(minutes=10 * (i + 1))).isoformat(), \
            ({} if value is None else {metric: value})


def test_a_rule_fires_once_while_the_condition_persists_then_resolves_and_cools_down():
    config = AlertConfig.model_validate({"rules": [
        {"name": "drift", "metric": "prediction_psi", "above": 0.2, "windows": 2, "cooldown": "30m"}]})
    state, events = {}, []
    # breach, breach (fires), breach (quiet), no data (no evidence), clear (resolves at 00:50), breach twice within
    # the 30-minute cool-down (said once: suppressed, with when it may fire), then a breach at 01:20, 30 minutes
    # on (fires again)
    messages = []
    for start, end, metrics in _windows([0.3, 0.4, 0.5, None, 0.1, 0.3, 0.3, 0.3, 0.3]):
        new = step_alerts(config, state, metrics, window_start=start, window_end=end)
        events += [(e.status, e.window_end[11:16]) for e in new]
        messages += [e.message for e in new]
        if end[11:16] == "01:10":
            assert state["drift"].suppressed_at is not None and not state["drift"].active
    assert events == [("firing", "00:20"), ("resolved", "00:50"), ("suppressed", "01:10"), ("firing", "01:20")]
    assert "held by its cooldown of 30m until 2026-01-01T01:20:00" in messages[2]
    assert state["drift"].active and state["drift"].suppressed_at is None


def test_an_unknown_metric_is_one_line_with_suggestions(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text("rules:\n  - {name: a, metric: psi_prediction, above: 0.2}\n")
    with pytest.raises(ConfigError) as error:
        load_alert_config(path)
    assert str(error.value).startswith(f"{path}: rules[0].metric: unknown metric 'psi_prediction'")
    assert "prediction_psi" in str(error.value)
    path.write_text("rules:\n  - {name: a, metric: ood_rate, above: 0.2, below: 0.1}\n")
    with pytest.raises(ConfigError, match="exactly one of above or below"):
        load_alert_config(path)
    path.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_alert_config(path)


class _Receiver:
    """A real HTTP server on loopback that fails the first ``failures`` posts with a 503."""

    def __init__(self, failures: int = 0):
        received, remaining = [], [failures]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if remaining[0] > 0:
                    remaining[0] -= 1
                    self.send_response(503)
                else:
                    received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_gets_the_alert_after_retries_and_an_unreachable_one_is_logged(caplog):
    receiver = _Receiver(failures=2)
    try:
        config = AlertConfig.model_validate({"rules": [{"name": "ood", "metric": "ood_rate", "above": 0.2}],
                                             "webhook": {"url": receiver.url, "retries": 3, "backoff_s": 0.01}})
        start, end, _ = next(_windows([0.5]))
        events = step_alerts(config, {}, {"ood_rate": 0.5}, window_start=start, window_end=end)
        deliver(events, config, run="demo")
    finally:
        receiver.close()
    assert events[0].delivered is True
    assert [(r["rule"], r["status"], r["run"], r["value"]) for r in receiver.received] == [("ood", "firing", "demo",
                                                                                             0.5)]
    waits = []
    unreachable = Webhook(url=receiver.url, retries=2, backoff_s=0.5)  # the receiver is shut down now
    with caplog.at_level("WARNING", logger="trustfm.monitor"):
        assert post_webhook(unreachable, {"x": 1}, sleep=waits.append) is False
    assert waits == [0.5, 1.0]
    assert "not delivered after 3 tries" in caplog.text and "ConnectError" in caplog.text


def test_a_rule_that_could_never_fire_is_refused(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text("rules:\n  - {name: a, metric: embedding_mmd_p, below: 0.001}\n")
    with pytest.raises(ConfigError, match="could never fire"):
        load_alert_config(path)
