"""Alert rules over window metrics: a YAML file of rules, a state machine that deduplicates, and delivery.

A rule fires when its metric is past the threshold for ``windows`` windows in a row, stays quiet while the
condition persists (one message, not one per window), sends a ``resolved`` message on the first window where it
no longer holds, and may not fire again until ``cooldown`` has passed since it resolved. A breach inside the
cooldown is not silent: one ``suppressed`` event says the rule would fire and until when it is held (logged and
kept with the events, not sent to the webhook: holding messages back is what the cooldown is for), and the rule
fires at the first breached window after the cooldown. Time is the windows' end time, so a replayed log alerts exactly as the live one did. A window without the metric (no feedback yet, no
detector) is no evidence either way: the rule's streak is left as it was.

Delivery: every event is logged (``trustfm.monitor``), posted to the webhook as JSON (retried with backoff on a
connection error or a 5xx; a 4xx is not retried), and shown as Prometheus gauges
(``trustfm_alert_active{alert,severity}``) so an existing Alertmanager can route it.
"""

from __future__ import annotations

import difflib
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustfm.errors import ConfigError

log = logging.getLogger("trustfm.monitor")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """``30s``, ``10m``, ``1h``, ``2d`` (or plain seconds) as a timedelta; ConfigError naming ``field`` otherwise."""
    text = str(text).strip()
    try:
        if text and text[-1] in _UNITS:
            seconds = float(text[:-1]) * _UNITS[text[-1]]
        else:
            seconds = float(text)
    except ValueError:
        raise ConfigError(f"{field}: '{text}' is not a duration (use 30s, 10m, 1h or 2d)") from None
    if seconds < 0:
        raise ConfigError(f"{field}: '{text}' is negative")
    return timedelta(seconds=seconds)


class AlertRule(BaseModel):
    """Fire when ``metric`` is ``above`` (or ``below``) its threshold for ``windows`` windows in a row."""

    model_config = ConfigDict(extra="forbid")

    name: str
    metric: str
    above: float | None = None
    below: float | None = None
    windows: int = Field(1, ge=1)
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown: str = "0s"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        from trustfm.monitor.window import WINDOW_METRICS

        if metric not in WINDOW_METRICS:
            close = difflib.get_close_matches(metric, WINDOW_METRICS, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; known: {', '.join(WINDOW_METRICS)}"
            raise ValueError(f"unknown metric '{metric}'{hint}")
        return metric

    @field_validator("cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value, field="cooldown")
        return value

    @model_validator(mode="after")
    def _one_threshold(self):
        from trustfm.monitor.window import MMD_P_FLOOR

        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.metric == "embedding_mmd_p" and self.below is not None and self.below <= MMD_P_FLOOR:
            raise ValueError(f"below {self.below:g} could never fire: embedding_mmd_p is a permutation p-value, "
                             f"never below {MMD_P_FLOOR:.4f} (use 0.01)")
        return self

    def breached(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below


class Webhook(BaseModel):
    """Where alert events are POSTed as JSON; ``retries`` more tries after the first, waiting ``backoff_s``,
    doubled each time."""

    model_config = ConfigDict(extra="forbid")

    url: str
    retries: int = Field(3, ge=0, le=10)
    timeout_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(0.5, ge=0)


class AlertConfig(BaseModel):
    """The alerts YAML file: ``rules`` and an optional ``webhook``."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AlertRule] = []
    webhook: Webhook | None = None

    @model_validator(mode="after")
    def _unique_names(self):
        names = [r.name for r in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"rule names must be unique: {', '.join(duplicated)}")
        return self


def load_alert_config(path: str | Path) -> AlertConfig:
    """Read and validate an alerts YAML file; one ConfigError line naming the file and field otherwise."""
    import yaml

    from trustfm.config.load import load_yaml

    path = Path(path)
    try:
        document = load_yaml(path.read_text(encoding="utf-8")) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML") from None
    try:
        return AlertConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
        raise ConfigError(f"{path}: {where or 'top level'}: {first['msg'].removeprefix('Value error, ')}") from None


class RuleState(BaseModel):
    streak: int = 0
    active: bool = False
    fired_at: str | None = None
    resolved_at: str | None = None
    suppressed_at: str | None = None  # window end of the breach the cooldown held back (None: not held now)


class AlertEvent(BaseModel):
    """One message: a rule started firing, resolved, or would fire but is held by its cooldown, at the end of
    window ``window_end`` (ISO UTC)."""

    rule: str
    status: Literal["firing", "resolved", "suppressed"]
    severity: str
    metric: str
    value: float | None
    threshold: float
    window_start: str
    window_end: str
    message: str
    delivered: bool | None = None  # to the webhook: None when there is none


def step_alerts(config: AlertConfig, state: dict[str, RuleState], metrics: dict[str, float], *,
                window_start: str, window_end: str) -> list[AlertEvent]:
    """Advance every rule by one window's ``metrics``; ``state`` is updated in place. Returns the new events."""
    events = []
    end = datetime.fromisoformat(window_end)
    for rule in config.rules:
        current = state.setdefault(rule.name, RuleState())
        value = metrics.get(rule.metric)
        if value is None:
            continue
        side = "above" if rule.above is not None else "below"

        def event(status: str, message: str) -> AlertEvent:
            return AlertEvent(rule=rule.name, status=status, severity=rule.severity, metric=rule.metric, value=value,
                              threshold=rule.threshold, window_start=window_start, window_end=window_end,
                              message=message)

        if rule.breached(value):
            current.streak += 1
            cooled = current.resolved_at is None or \
                end - datetime.fromisoformat(current.resolved_at) >= parse_duration(rule.cooldown)
            if not current.active and current.streak >= rule.windows and cooled:
                current.active, current.fired_at, current.suppressed_at = True, window_end, None
                events.append(event("firing", f"{rule.name}: {rule.metric} = {value:.4g}, {side} "
                                              f"{rule.threshold:g} for {current.streak} window(s)"))
            elif not current.active and current.streak >= rule.windows and current.suppressed_at is None:
                until = datetime.fromisoformat(current.resolved_at) + parse_duration(rule.cooldown)
                current.suppressed_at = window_end
                events.append(event("suppressed", f"{rule.name} would fire ({rule.metric} = {value:.4g}, {side} "
                                                  f"{rule.threshold:g}) but is held by its cooldown of "
                                                  f"{rule.cooldown} until {until.isoformat(timespec='seconds')}"))
        else:
            current.streak = 0
            current.suppressed_at = None
            if current.active:
                current.active, current.resolved_at = False, window_end
                events.append(event("resolved", f"{rule.name} resolved: {rule.metric} = {value:.4g}, no longer "
                                                f"{side} {rule.threshold:g}"))
    return events


def post_webhook(webhook: Webhook, payload: dict, *, sleep=time.sleep) -> bool:
    """POST ``payload`` as JSON; True once a 2xx answers. Failures are logged (the host only, never the payload)
    and never raised: an unreachable receiver must not stop monitoring."""
    import httpx

    from urllib.parse import urlsplit

    host = urlsplit(webhook.url).netloc or webhook.url
    reason = ""
    for attempt in range(webhook.retries + 1):
        if attempt:
            sleep(webhook.backoff_s * 2 ** (attempt - 1))
        try:
            response = httpx.post(webhook.url, json=payload, timeout=webhook.timeout_s)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            continue
        if response.is_success:
            return True
        reason = f"HTTP {response.status_code}"
        if response.status_code < 500:
            break  # the receiver refused this message; trying again sends the same one
    log.warning("webhook %s: alert not delivered after %d tries (%s); it stays in the log and metrics",
                host, attempt + 1, reason)
    return False


def deliver(events: list[AlertEvent], config: AlertConfig, *, run: str) -> None:
    """Log each event and post it to the webhook (``delivered`` records the outcome)."""
    for event in events:
        level = logging.WARNING if event.status == "firing" and event.severity != "info" else logging.INFO
        log.log(level, "alert %s: %s", event.status, event.message)
        if config.webhook is not None and event.status != "suppressed":
            event.delivered = post_webhook(config.webhook, {"source": "trustfm", "run": run,
                                                            **event.model_dump(exclude={"delivered"})})
