"""The service's application state: one typed object per app, built before it starts and opened in its lifespan.

:class:`ServiceState` holds what every route needs: the run, the settings, the model's hashes and the release
gate (known before start-up), the Prometheus metrics, and, once :meth:`ServiceState.open` ran in the lifespan,
the model, its micro-batcher, the key store, the per-key limits and the request log. Routes reach it through the
dependencies in :mod:`trustfm.serve.deps`, which tests can override.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustfm.serve.settings import ServeSettings, default_paths, open_key_store

log = logging.getLogger("trustfm.serve")


def service_metrics(registry) -> dict[str, Any]:
    """The service's Prometheus metrics, in ``registry`` (names as ``/metrics`` shows them, less ``_total``)."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "requests": Counter("trustfm_requests", "requests by endpoint and status", ["endpoint", "status"],
                            registry=registry),
        "latency": Histogram("trustfm_request_latency_seconds", "request latency by endpoint", ["endpoint"],
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=registry),
        "batch": Histogram("trustfm_batch_size_texts", "texts per model batch",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry),
        "batch_seconds": Histogram("trustfm_batch_seconds", "seconds per model batch", registry=registry),
        "queue": Gauge("trustfm_queue_texts", "texts waiting for a batch", registry=registry,
                       multiprocess_mode="livesum"),
        "predictions": Counter("trustfm_predictions", "answers by predicted label", ["label"], registry=registry),
        "ood": Counter("trustfm_ood", "answers flagged out-of-distribution", registry=registry),
        "abstain": Counter("trustfm_abstain", "answers where an output rule abstained", registry=registry),
        "texts": Counter("trustfm_texts", "texts answered", registry=registry),
        "redaction_backlog": Gauge("trustfm_log_redaction_backlog_texts", "logged texts waiting for redaction",
                                   registry=registry, multiprocess_mode="livesum"),
        "unredacted": Gauge("trustfm_log_unredacted_texts", "logged texts that kept their hash only (backlog full)",
                            registry=registry, multiprocess_mode="livesum"),
        "extraction_alerts": Counter("trustfm_extraction_alerts", "keys whose traffic looked like model extraction",
                                     registry=registry),
        "gate_passed": Gauge("trustfm_gate_passed", "1 when the served run's release gate passed, 0 when it failed "
                             "(absent: no gate was run)", registry=registry, multiprocess_mode="max"),
        "gate_overridden": Gauge("trustfm_gate_overridden", "1 when a run whose release gate failed is served under "
                                 "allow_failed_gate", registry=registry, multiprocess_mode="max"),
    }


@dataclass
class ServiceState:
    """Everything the routes share. ``model`` .. ``log`` are None until :meth:`open` (the app's lifespan)."""

    run_dir: Path
    settings: ServeSettings
    model_hashes: dict[str, str]  # weight file -> sha256, checked against run.json before start-up
    model_hash: str  # their fingerprint, in every answer and log row
    gate: dict | None  # the release gate at release time (None: no gate was run)
    registry: Any  # the Prometheus registry of ``metrics``
    metrics: dict[str, Any]
    extra_registry: Any = None  # another registry /metrics serves (a background monitor's gauges)
    ready: bool = False
    model: Any = None  # trustfm.serve.model.ServingModel
    batcher: Any = None  # trustfm.serve.batcher.MicroBatcher
    keys: Any = None  # trustfm.serve.keys.KeyStore or DatabaseKeyStore
    limits: Any = None  # trustfm.serve.limits.Limits
    log: Any = None  # trustfm.serve.requestlog.RequestLog

    @classmethod
    def for_run(cls, run_dir: str | Path, settings: ServeSettings, *, model_hashes: dict[str, str],
                gate: dict | None, extra_registry=None) -> "ServiceState":
        """The state before start-up: metrics registered, the gate's gauges set."""
        from prometheus_client import CollectorRegistry

        from trustfm.models.loading import model_fingerprint

        registry = CollectorRegistry()
        metrics = service_metrics(registry)
        if gate is not None:
            metrics["gate_passed"].set(1 if gate["passed"] else 0)
            metrics["gate_overridden"].set(1 if gate.get("overridden") else 0)
        return cls(run_dir=Path(run_dir), settings=settings, model_hashes=model_hashes,
                   model_hash=model_fingerprint(model_hashes), gate=gate, registry=registry, metrics=metrics,
                   extra_registry=extra_registry)

    async def open(self) -> None:
        """Load the model, start its batcher, open the keys, limits and request log; then ready."""
        from trustfm.config import load_config
        from trustfm.runs import existing_run
        from trustfm.serve.batcher import MicroBatcher
        from trustfm.serve.limits import LocalLimits, SharedLimits
        from trustfm.serve.model import ServingModel
        from trustfm.serve.requestlog import RequestLog

        settings, metrics = self.settings, self.metrics
        self.model = ServingModel(self.run_dir, rules_path=settings.rules, disclosure=settings.disclosure,
                                  digits=settings.digits, batch_size=settings.max_batch_texts,
                                  pass_cost_tokens=settings.pass_cost_tokens, backend=settings.backend)
        max_length = self.model.predictor.max_length

        def count_tokens(text) -> int:
            # characters / 4 bounds a word-piece count well enough for budgeting, without tokenising twice; an
            # image (decoded pixels) is one unit
            return min(max_length, 2 + len(text) // 4) if isinstance(text, str) else 1

        def on_batch(size: int, tokens: int, seconds: float) -> None:
            metrics["batch"].observe(size)
            metrics["batch_seconds"].observe(seconds)

        def on_alert(key_id: str, texts: int, distinct: int) -> None:
            metrics["extraction_alerts"].inc()
            log.warning("possible model extraction: key %s sent %d texts (%d distinct) within %.0f s", key_id,
                        texts, distinct, settings.alert_window_s)

        self.batcher = MicroBatcher(self.model.answer, count_tokens=count_tokens,
                                    max_batch_texts=settings.max_batch_texts,
                                    max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms,
                                    max_queue_texts=settings.max_queue_texts, on_batch=on_batch)
        await self.batcher.start()
        config = load_config(existing_run(self.run_dir).config)
        limit_options = dict(per_minute=settings.rate_limit_per_minute, budget=settings.key_query_budget,
                             alert_texts=settings.alert_texts, window_s=settings.alert_window_s, on_alert=on_alert)
        self.limits = (SharedLimits(settings.state_url, **limit_options) if settings.state_url
                       else LocalLimits(**limit_options))
        self.keys = open_key_store(self.run_dir, keys_file=settings.keys_file, state_url=settings.state_url,
                                   refresh_s=settings.keys_refresh_s)
        self.log = RequestLog(default_paths(self.run_dir, settings)[1], text_policy=settings.log_text,
                              privacy=config.privacy, redact_backlog_texts=settings.log_redact_backlog_texts,
                              salt=log_salt(self.run_dir))
        if settings.auth and not self.keys.active():
            log.warning("no API keys yet: every request will get 401 (create one: trustfm serve keys create %s)",
                        self.run_dir)
        self.ready = True
        log.info("ready: %s (%s model on %s, %d active keys, log %s)", self.run_dir.name,
                 self.model.predictor.meta.get("format", "torch"), self.model.backend, len(self.keys.active()),
                 self.log.safe_url.split(":", 1)[0])

    async def close(self) -> None:
        """Stop taking requests; in-flight ones finish and their log rows are committed before they answer."""
        self.ready = False
        await self.batcher.stop()
        self.log.close()
        self.limits.close()
        self.keys.close()
        log.info("stopped: every answered request is in the log")

    def refresh_gauges(self) -> None:
        """Set the gauges that are read at scrape time (queue and redaction backlog)."""
        if self.batcher is not None:
            self.metrics["queue"].set(self.batcher.queued_texts)
            self.metrics["redaction_backlog"].set(self.log.redaction_backlog)
            self.metrics["unredacted"].set(self.log.unredacted_texts)


def log_salt(run_dir: Path) -> str:
    """The request log's hashing salt, created once per run folder (0600), so every worker hashes alike."""
    import secrets

    from trustfm.fileio import write_text_atomic

    path = run_dir / "serving" / "log_salt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_text_atomic(path, secrets.token_hex(16), mode=0o600)
        except Exception:  # noqa: BLE001 - another worker wrote it first
            pass
    return path.read_text(encoding="utf-8").strip()
