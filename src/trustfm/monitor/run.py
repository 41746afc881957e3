"""``monitor_run``: the serving log of a run's model, read window by window against its reference profile.

Each call judges the complete windows the log gained since the last call (the state lives in the run folder:
``results/monitoring.json`` holds the windows and alert events, ``monitoring/alert_state.json`` the rules'
streaks), so ``trustfm monitor --every 10m`` and a cron job of one-shot calls behave alike. A recent window
judged before its texts were redacted into the log is judged again (its embedding test) once they are there.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.fileio import write_json_atomic
from trustfm.monitor.alerts import AlertConfig, AlertEvent, RuleState, deliver, parse_duration, step_alerts
from trustfm.monitor.window import MonitorWindow, evaluate_window
from trustfm.results import Result
from trustfm.runs import existing_run, read_json

log = logging.getLogger("trustfm.monitor")
MAX_EMPTY_WINDOWS = 1000  # quiet periods longer than this many windows are summarised, not listed
RECHECK_WINDOWS = 24  # the latest windows whose missing texts (redaction pending) are looked for again


class Reaudit(BaseModel):
    """The performance and fairness audits re-run on feedback-labelled production answers (``n`` of them),
    beside the training-time numbers of the reference profile."""

    n: int
    performance: dict  # a PerformanceResult document (kind performance)
    fairness: dict | None  # a FairnessResult document (kind fairness), None without groups
    training: dict[str, float]  # the reference profile's numbers at release (on ``reference_split``)
    note: str = ""
    reference_split: str = "validation"  # the split the reference profile was measured on


class MonitoringResult(Result):
    """Windows of production traffic judged against the reference, the alert events they raised, and the latest
    re-audit. ``window``: the window size (``500``: answers per window; ``1h``: a duration)."""

    kind: Literal["monitoring"] = "monitoring"
    title: ClassVar[str] = "Production monitoring"
    log: str
    model_sha256: str
    window: str
    processed: int = 0  # answers judged so far
    last_end: str | None = None
    reference: dict
    windows: list[MonitorWindow] = []
    alerts: list[AlertEvent] = []
    new_events: int = 0  # the last ``new_events`` of ``alerts`` were raised by the latest call
    active_alerts: list[str] = []
    suppressed_alerts: list[str] = []  # rules breached now whose cooldown holds them back
    other_models: dict[str, int] = {}
    reaudit: Reaudit | None = None

    def metrics(self) -> dict[str, float]:
        """The latest window's metrics (``latest.<name>``), the count of windows and of active alerts."""
        out = {"windows": float(len(self.windows)), "active_alerts": float(len(self.active_alerts))}
        if self.windows:
            out |= {f"latest.{k}": v for k, v in self.windows[-1].metrics().items()}
        return out

    def flags(self) -> list[str]:
        return [f"alert active: {name}" for name in self.active_alerts]


def parse_window(spec: str) -> int | timedelta:
    """``500`` (answers per window) or a duration (``1h``)."""
    spec = str(spec).strip()
    if spec.isdigit():
        if int(spec) < 10:
            raise ConfigError(f"--window {spec}: a window needs at least 10 answers")
        return int(spec)
    duration = parse_duration(spec, field="--window")
    if duration.total_seconds() <= 0:
        raise ConfigError(f"--window {spec}: must be positive")
    return duration


class NoCompleteWindow(ConfigError):
    """The log has no complete window to judge yet (one clear line; ``--every`` simply waits)."""


def _result_path(run_dir: Path) -> Path:
    return existing_run(run_dir).result("monitoring")


def _windows_of(logged, spec: int | timedelta, *, processed: int, last_end: datetime | None, now: datetime):
    """(start, end, row indices) of the complete windows after what was processed."""
    n = len(logged)
    if isinstance(spec, int):
        out = []
        for first in range(processed, n - spec + 1, spec):
            rows = np.arange(first, first + spec)
            out.append((logged.received_at[first], logged.received_at[first + spec - 1], rows))
        return out
    if n == 0:
        return []
    seconds = spec.total_seconds()
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    # windows aligned to multiples of their length since the epoch, like Prometheus' ranges
    start = last_end or epoch + timedelta(seconds=(logged.received_at[0] - epoch).total_seconds() // seconds * seconds)
    stamps = np.asarray([(t - epoch).total_seconds() for t in logged.received_at])
    out = []
    while start + spec <= now:
        if len(out) >= MAX_EMPTY_WINDOWS and not np.any(stamps >= (start - epoch).total_seconds()):
            break
        lo, hi = (start - epoch).total_seconds(), (start + spec - epoch).total_seconds()
        out.append((start, start + spec, np.nonzero((stamps >= lo) & (stamps < hi))[0]))
        start += spec
    return out


def monitor_run(run_dir: str | Path, *, log_url: str, window: str = "1h", alerts: AlertConfig | None = None,
                reaudit: bool = False, now: datetime | None = None, gauges=None) -> tuple[MonitoringResult, int]:
    """Judge the new complete windows of ``log_url`` for ``run_dir``'s model; returns (the updated result, how
    many windows were new). Raises :class:`NoCompleteWindow` when there are none and nothing else was asked.

    ``gauges``: a :class:`MonitorGauges` to publish the latest numbers and active alerts to Prometheus.
    """
    from trustfm.monitor.logreader import read_log
    from trustfm.monitor.reference import load_reference
    from trustfm.serve.requestlog import RequestLog

    run_dir = existing_run(run_dir).root
    spec = parse_window(window)
    alerts = alerts or AlertConfig()
    now = now or datetime.now(timezone.utc)
    reference = load_reference(run_dir)
    fingerprint = reference.profile.model_sha256  # the current weights' (a stale profile is rebuilt on load)
    safe_url = RequestLog.masked(log_url)
    path = _result_path(run_dir)
    state_path = run_dir / "monitoring" / "alert_state.json"
    result = None
    if path.is_file():
        previous = MonitoringResult.model_validate(read_json(path))
        if previous.log == safe_url and previous.window == window and previous.model_sha256 == fingerprint:
            result = previous
    if result is None:
        profile = reference.profile
        result = MonitoringResult(log=safe_url, model_sha256=fingerprint, window=window, reference={
            "split": profile.split, "n": profile.n, "label_names": profile.label_names,
            "class_proportions": profile.class_proportions, "ood_rate": profile.ood_rate, **profile.metrics})
        state: dict[str, RuleState] = {}
    else:
        state = {k: RuleState.model_validate(v) for k, v in
                 (read_json(state_path) if state_path.is_file() else {}).items()}
    last_end = None if result.last_end is None else datetime.fromisoformat(result.last_end)
    # count windows need every row (they are numbered from the first); time windows only the rows after the last
    logged, others = read_log(log_url, model_sha256=fingerprint, label_names=reference.profile.label_names,
                              since=None if isinstance(spec, int) else last_end)
    result.other_models = others
    windows = _windows_of(logged, spec, processed=result.processed, last_end=last_end, now=now)
    if not windows and not reaudit:
        size = f"{spec} answers" if isinstance(spec, int) else f"{window} (ending before now)"
        waiting = len(logged) - result.processed if isinstance(spec, int) else len(logged)
        raise NoCompleteWindow(f"no complete window in {safe_url} yet: {waiting} new answers of this model; a "
                               f"window is {size}")
    predictor = None
    config_seed = 0
    if windows:
        from trustfm.config import load_config
        from trustfm.models.predictor import Predictor

        predictor = Predictor.from_run(run_dir)
        config = load_config(existing_run(run_dir).config)
        config_seed = config.seed
    events_before = len(result.alerts)
    if predictor is None and any(w.texts_missing for w in result.windows[-RECHECK_WINDOWS:]):
        from trustfm.config import load_config
        from trustfm.models.predictor import Predictor

        predictor, config = Predictor.from_run(run_dir), load_config(existing_run(run_dir).config)
        config_seed = config.seed
    if predictor is not None and predictor.modality != "image" and not predictor.black_box:
        _judge_pending_again(result, reference, log_url, spec, embed=predictor.embed, seed=config_seed, now=now)
    for start, end, rows in windows:
        part = logged.take(rows)
        judged = evaluate_window(reference, part, start=start.isoformat(), end=end.isoformat(),
                                 embed=None if predictor.black_box else predictor.embed,
                                 bootstrap_samples=config.evaluate.bootstrap_samples,
                                 confidence=config.evaluate.confidence, seed=config_seed,
                                 images=predictor.modality == "image")
        result.windows.append(judged)
        result.processed += len(rows)
        result.last_end = end.isoformat()
        events = step_alerts(alerts, state, judged.metrics(), window_start=judged.start, window_end=judged.end)
        deliver(events, alerts, run=run_dir.name)
        result.alerts.extend(events)
    result.active_alerts = sorted(name for name, s in state.items() if s.active)
    result.suppressed_alerts = sorted(name for name, s in state.items() if s.suppressed_at is not None)
    result.new_events = len(result.alerts) - events_before
    if reaudit:
        result.reaudit = reaudit_feedback(logged if isinstance(spec, int) else read_log(
            log_url, model_sha256=fingerprint, label_names=reference.profile.label_names)[0], reference,
            run_dir=run_dir)
    write_json_atomic(path, result.model_dump(mode="json"))
    state_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_path, {k: v.model_dump() for k, v in state.items()})
    if gauges is not None:
        gauges.publish(result, alerts)
    return result, len(windows)


def _judge_pending_again(result: MonitoringResult, reference, log_url: str, spec, *, embed, seed: int,
                        now: datetime) -> None:
    """The embedding test of the latest windows that were judged without some of their texts, now that the log
    may hold them (redaction runs behind the answers); a window gets it again only when more texts are there."""
    from trustfm.monitor.logreader import read_log
    from trustfm.monitor.window import embedding_drift

    recent = result.windows[-RECHECK_WINDOWS:]
    pending = [w for w in recent if w.texts_missing]
    if not pending:
        return
    first = len(result.windows) - len(recent)
    offsets = np.cumsum([0] + [w.n for w in result.windows])  # count windows: each window's first row
    since = None if isinstance(spec, int) else datetime.fromisoformat(pending[0].start) - timedelta(microseconds=1)
    logged, _ = read_log(log_url, model_sha256=result.model_sha256, label_names=reference.profile.label_names,
                         since=since)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    stamps = np.asarray([(t - epoch).total_seconds() for t in logged.received_at])
    for i, window in enumerate(recent, start=first):
        if not window.texts_missing:
            continue
        if isinstance(spec, int):
            rows = np.arange(offsets[i], offsets[i + 1])
        else:
            lo, hi = ((datetime.fromisoformat(t) - epoch).total_seconds() for t in (window.start, window.end))
            rows = np.nonzero((stamps >= lo) & (stamps < hi))[0]
        part = logged.take(rows[rows < len(logged)])
        readable = [j for j, t in enumerate(part.texts) if t is not None]
        if len(readable) < 2 or len(part) - len(readable) >= window.texts_missing:
            continue
        embedding_drift(window, reference, part, readable, embed=embed, seed=seed)
        window.notes.append(f"embedding drift judged again at {now.isoformat(timespec='seconds')}: "
                            f"{window.texts_missing - (len(part) - len(readable))} more texts were redacted into "
                            "the log after the window was first judged")
        window.texts_missing = len(part) - len(readable)


def reaudit_feedback(logged, reference, *, run_dir: Path) -> Reaudit:
    """Performance (with intervals and calibration) and group fairness on the answers that got feedback."""
    from trustfm.audit.fairness.group import group_fairness
    from trustfm.audit.fairness.plugin import identity_mentions
    from trustfm.audit.performance.evaluation import evaluate_predictions
    from trustfm.config import load_config

    config = load_config(existing_run(run_dir).config)
    labelled = (logged.true_label >= 0) & ~np.isnan(logged.probabilities).any(axis=1)
    n = int(labelled.sum())
    if n < 2:
        raise NoCompleteWindow(f"re-audit: {n} feedback-labelled answers in the log; send true labels to "
                               "/v1/feedback first")
    names = reference.profile.label_names
    proba = logged.probabilities[labelled]
    proba = proba / proba.sum(axis=1, keepdims=True)
    truth = logged.true_label[labelled]
    boot = dict(bootstrap_samples=config.evaluate.bootstrap_samples, confidence=config.evaluate.confidence,
                seed=config.seed)
    performance = evaluate_predictions(truth, proba, names, split="production feedback", **boot)
    rows = np.nonzero(labelled)[0]
    if any(logged.groups[i] is not None for i in rows):
        groups, source = [logged.groups[i] or "unnamed" for i in rows], "the request's groups field"
    elif all(logged.texts[i] is not None for i in rows):
        groups, source = identity_mentions([logged.texts[i] for i in rows]), "identity terms in the redacted text"
    else:
        groups, source = None, ""
    fairness = None
    if groups is not None and len(set(groups)) > 1:
        fairness = group_fairness(truth, proba.argmax(axis=1), {"group": groups}, names,
                                  dataset="production feedback", min_group_size=config.fairness.min_group_size,
                                  **boot)
    note = f"groups from {source}" if fairness is not None else "no groups: fairness not re-audited"
    return Reaudit(n=n, performance=performance.model_dump(mode="json"),
                   fairness=None if fairness is None else fairness.model_dump(mode="json"),
                   training=reference.profile.metrics, note=note, reference_split=reference.profile.split)


class MonitorGauges:
    """Prometheus gauges of the monitor: ``trustfm_monitor_metric{metric}`` (the latest window),
    ``trustfm_alert_active{alert,severity}`` (1 while firing) and ``trustfm_alert_suppressed{alert,severity}`` (1
    while breached but held by the cooldown), in ``registry``."""

    def __init__(self, registry=None):
        from prometheus_client import REGISTRY, Gauge

        registry = registry if registry is not None else REGISTRY
        self.metric = Gauge("trustfm_monitor_metric", "latest monitoring window's value", ["metric"],
                            registry=registry)
        self.active = Gauge("trustfm_alert_active", "1 while the alert rule fires", ["alert", "severity"],
                            registry=registry)
        self.suppressed = Gauge("trustfm_alert_suppressed", "1 while the rule is breached but held by its cooldown",
                                ["alert", "severity"], registry=registry)

    def publish(self, result: MonitoringResult, alerts: AlertConfig) -> None:
        if result.windows:
            for name, value in result.windows[-1].metrics().items():
                self.metric.labels(name).set(value)
        for rule in alerts.rules:
            self.active.labels(rule.name, rule.severity).set(1.0 if rule.name in result.active_alerts else 0.0)
            self.suppressed.labels(rule.name, rule.severity).set(1.0 if rule.name in result.suppressed_alerts else 0.0)


def monitor_loop(*, run_dir: str | Path, log_url: str, window: str, alerts: AlertConfig, every_s: float,
                 gauges: MonitorGauges | None = None, stop=None) -> None:
    """Run :func:`monitor_run` every ``every_s`` seconds (first after one pause) until ``stop`` (a
    ``threading.Event``) is set; problems are logged in one line (never a text) and the loop goes on."""
    import threading

    from trustfm.errors import TrustfmError

    stop = stop or threading.Event()
    while not stop.wait(every_s):
        try:
            result, new = monitor_run(run_dir, log_url=log_url, window=window, alerts=alerts, gauges=gauges)
            log.info("monitor: %d new window(s), %d active alert(s)", new, len(result.active_alerts))
        except NoCompleteWindow as exc:
            log.info("monitor: %s", exc)
        except TrustfmError as exc:
            log.warning("monitor: %s", exc)
        except Exception as exc:  # noqa: BLE001 - the server keeps serving; the type says what to look for
            log.error("monitor: unexpected %s", type(exc).__name__)
