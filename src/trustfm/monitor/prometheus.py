"""The alert rules as Prometheus alerting rules, for operators who route alerts with Alertmanager.

``trustfm monitor RUN --alerts alerts.yaml --export-rules rules.yml`` writes them. Each trustfm rule becomes one
Prometheus rule over the gauge the monitor publishes (``trustfm_monitor_metric{metric}``, the latest window's
value, on ``--metrics-port``):

- ``above``/``below`` become ``>``/``<`` on that gauge;
- ``windows: n`` (n windows in a row) becomes ``for: (n - 1) x every``, ``every`` being how often the monitor
  judges a new window (``trustfm monitor --every``): Prometheus counts time, the monitor counts windows, and with
  one window per pass they agree;
- ``cooldown`` has no Prometheus counterpart: Alertmanager's ``repeat_interval`` and inhibitions do that job
  there (the export says so in each rule's annotations);
- the severity and the trustfm rule's name are labels, so Alertmanager routes on them.

Rules of the service itself are added (``trustfm-service`` group): a replica down, 5xx answers, an extraction
alert, a model served although its release gate failed. Every metric they read is one the service or monitor
exports (the tests check it against live ``/metrics``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from trustfm.errors import ConfigError
from trustfm.monitor.alerts import AlertConfig, parse_duration

# the metric names the exported rules and the shipped dashboard read (prometheus-client adds _total to counters)
MONITOR_METRIC = "trustfm_monitor_metric"
SERVICE_RULES = [
    {"alert": "TrustfmReplicaDown", "expr": 'up{job="trustfm-serve"} == 0', "for": "30s",
     "labels": {"severity": "critical"},
     "annotations": {"summary": "a trustfm replica does not answer Prometheus ({{ $labels.instance }})"}},
    {"alert": "TrustfmServerErrors",
     "expr": 'sum(rate(trustfm_requests_total{status=~"5.."}[5m])) '
             "/ sum(rate(trustfm_requests_total[5m])) > 0.01",
     "for": "5m", "labels": {"severity": "warning"},
     "annotations": {"summary": "over 1% of requests answered 5xx for 5 minutes"}},
    {"alert": "TrustfmExtractionSuspected", "expr": "increase(trustfm_extraction_alerts_total[10m]) > 0",
     "labels": {"severity": "warning"},
     "annotations": {"summary": "a key's traffic looked like model extraction (the key id is in the service log)"}},
    {"alert": "TrustfmGateOverridden", "expr": "trustfm_gate_overridden == 1", "labels": {"severity": "info"},
     "annotations": {"summary": "a model whose release gate failed is served under allow_failed_gate"}},
]


def alert_name(rule_name: str) -> str:
    """``longer-texts`` -> ``TrustfmLongerTexts``: Prometheus alert names are metric-name shaped."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", rule_name) if p]
    return "Trustfm" + "".join(p[:1].upper() + p[1:] for p in parts)


def _duration(delta: timedelta) -> str:
    seconds = int(round(delta.total_seconds()))
    return f"{seconds}s"


def prometheus_rules(config: AlertConfig, *, every: timedelta | None) -> dict:
    """The Prometheus rules document (``groups``) for ``config``'s rules and the service's own.

    ``every``: how often the monitor judges a window (``--every``); needed when a rule asks for several windows
    in a row. ConfigError (one line) when it is missing then, or when two rules map to one alert name.
    """
    rules, seen = [], {}
    for rule in config.rules:
        name = alert_name(rule.name)
        if name in seen:
            raise ConfigError(f"rules '{seen[name]}' and '{rule.name}' both become the Prometheus alert {name}: "
                              "rename one")
        seen[name] = rule.name
        side, op = ("above", ">") if rule.above is not None else ("below", "<")
        exported = {"alert": name, "expr": f'{MONITOR_METRIC}{{metric="{rule.metric}"}} {op} {rule.threshold!r}'}
        if rule.windows > 1:
            if every is None:
                raise ConfigError(f"rule '{rule.name}' asks for {rule.windows} windows in a row: give the monitor's "
                                  "--every, so that they become a duration Prometheus can count")
            exported["for"] = _duration(every * (rule.windows - 1))
        exported["labels"] = {"severity": rule.severity, "trustfm_rule": rule.name}
        note = f"{rule.metric} {side} {rule.threshold:g} for {rule.windows} window(s) in a row"
        if parse_duration(rule.cooldown).total_seconds():
            note += f"; trustfm's cooldown of {rule.cooldown} is not exported (use Alertmanager's repeat_interval)"
        exported["annotations"] = {"summary": f"{rule.name}: {note}",
                                   "value": "{{ $value }}"}
        rules.append(exported)
    groups = [{"name": "trustfm-service", "rules": SERVICE_RULES}]
    if rules:
        groups.insert(0, {"name": "trustfm-monitor", "rules": rules})
    return {"groups": groups}

