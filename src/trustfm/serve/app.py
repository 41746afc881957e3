"""The inference service: FastAPI over one :class:`~trustfm.serve.model.ServingModel`, micro-batched.

``create_app(run_dir, settings)`` builds it; ``trustfm serve`` runs it under uvicorn. Endpoints:
``POST /v1/predict``, ``POST /v1/explain``, ``POST /v1/feedback``, ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (Prometheus). Every request is authenticated by an API key
(``Authorization: Bearer tfm_...`` or ``X-API-Key``) unless ``auth`` is off, limited in size and
rate, and logged to the request log without its raw text. Errors are one JSON line
``{"error": ..., "detail": ...}`` with a 4xx status; nothing the client sends produces a 500.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the request models are
# imported inside create_app (fastapi is an optional dependency), so they must be evaluated where they are defined
import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from trustfm.errors import ConfigError
from trustfm.serve.settings import ServeSettings, default_paths, open_key_store

log = logging.getLogger("trustfm.serve")

API_PATHS = ("/v1/predict", "/v1/explain", "/v1/feedback", "/v1/model")


def check_model_files(run_dir: Path) -> dict[str, str]:
    """The served weight files' sha256, checked against ``run.json``'s record; ConfigError when they differ
    (the CLI checks, before this, that ``run.json``'s record is the one the run's report signed)."""
    from trustfm.models.loading import model_weight_hashes
    from trustfm.runs import RunRecord, existing_run

    paths = existing_run(run_dir)
    meta_path = paths.model / "trustfm_model.json"
    if meta_path.is_file() and json.loads(meta_path.read_text(encoding="utf-8")).get("format") == "endpoint":
        raise ConfigError(f"{paths.root} is a model behind an endpoint: it is served where it lives; trustfm audits "
                          "it through its answers")
    recorded = RunRecord.load(paths).model_sha256 or {}
    actual = model_weight_hashes(paths.model)
    changed = sorted(name for name in recorded if actual.get(name) != recorded[name])
    if not recorded or changed:
        raise ConfigError(f"refusing to serve {paths.model}: " + (
            f"{', '.join(changed)} differ(s) from the hashes recorded in run.json" if changed
            else "run.json records no model hashes"))
    return actual


class BodyLimit:
    """ASGI middleware: reads a request body up to ``max_bytes`` and answers 413 beyond it (Content-Length or
    not), then hands the buffered body to the app."""

    def __init__(self, app, *, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes)
        body = bytearray()
        while not too_large:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            too_large = len(body) > self.max_bytes
            if not message.get("more_body"):
                break
        if too_large:
            response = _error(413, "too_large", f"the body is over {self.max_bytes} bytes")
            return await response(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


def _metrics(registry):
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


def check_release_gate(run_dir: Path, settings: ServeSettings, *, warn: bool = True) -> dict | None:
    """The run's release gate (``results/gate.json``: policy, passed, outcomes), or None when none was run.

    A failed gate refuses the service (:class:`~trustfm.errors.CheckFailed`, naming the failed rules) unless
    ``settings.allow_failed_gate``; then it is served with a warning in the log (``warn``) and ``overridden`` set.
    """
    from trustfm.errors import CheckFailed
    from trustfm.serve.schemas import release_gate

    gate = release_gate(run_dir)
    if gate is None or gate["passed"]:
        return gate
    failed = "; ".join(o["rule"] for o in gate["outcomes"] if not o["passed"])
    if not settings.allow_failed_gate:
        raise CheckFailed(f"refusing to serve {run_dir}: its release gate '{gate['policy']}' FAILED ({failed}); "
                          "fix the model, or serve it anyway with --allow-failed-gate (logged, and shown in "
                          "/v1/model and /metrics)")
    if warn:
        log.warning("serving %s although its release gate '%s' FAILED (%s): allow_failed_gate is set",
                    Path(run_dir).name, gate["policy"], failed)
    return {**gate, "overridden": True}


class _StateUnavailable(Exception):
    """The shared state (``state_url``) did not answer: the request gets 503, never a guess."""


def _error(status: int, error: str, detail: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def create_app(run_dir: str | Path, settings: ServeSettings | None = None, *, extra_registry=None):
    """The FastAPI application serving ``run_dir``'s model under ``settings``; ``/metrics`` also serves
    ``extra_registry`` (a Prometheus registry), when given."""
    import os

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from trustfm.serve.batcher import MicroBatcher, QueueFull
    from trustfm.serve.limits import LocalLimits, SharedLimits
    from trustfm.serve.requestlog import RequestLog
    from trustfm.serve.schemas import (ExplainRequest, ExplainResponse, FeedbackRequest, ModelInfo, PredictRequest,
                                       PredictResponse)

    run_dir = Path(run_dir)
    settings = settings or ServeSettings()
    model_hashes = check_model_files(run_dir)
    from trustfm.models.loading import model_fingerprint

    model_hash = model_fingerprint(model_hashes)
    _, log_url = default_paths(run_dir, settings)
    gate = check_release_gate(run_dir, settings)
    registry = CollectorRegistry()
    metrics = _metrics(registry)
    if gate is not None:
        metrics["gate_passed"].set(1 if gate["passed"] else 0)
        metrics["gate_overridden"].set(1 if gate.get("overridden") else 0)
    state: dict[str, Any] = {"ready": False}

    @asynccontextmanager
    async def lifespan(app):
        from trustfm.config import load_config
        from trustfm.runs import existing_run
        from trustfm.serve.model import ServingModel

        model = ServingModel(run_dir, rules_path=settings.rules, disclosure=settings.disclosure,
                             digits=settings.digits, batch_size=settings.max_batch_texts,
                             pass_cost_tokens=settings.pass_cost_tokens, backend=settings.backend)
        tokenizer = model.predictor.tokenizer
        max_length = model.predictor.max_length

        def count_tokens(text) -> int:
            # characters / 4 bounds a word-piece count well enough for budgeting, without tokenising twice; an
            # image (decoded pixels) is one unit
            return min(max_length, 2 + len(text) // 4) if isinstance(text, str) else 1

        def on_batch(size: int, tokens: int, seconds: float) -> None:
            metrics["batch"].observe(size)
            metrics["batch_seconds"].observe(seconds)

        batcher = MicroBatcher(model.answer, count_tokens=count_tokens, max_batch_texts=settings.max_batch_texts,
                               max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms,
                               max_queue_texts=settings.max_queue_texts, on_batch=on_batch)
        await batcher.start()
        config = load_config(existing_run(run_dir).config)
        def on_alert(key_id: str, texts: int, distinct: int) -> None:
            metrics["extraction_alerts"].inc()
            log.warning("possible model extraction: key %s sent %d texts (%d distinct) within %.0f s", key_id,
                        texts, distinct, settings.alert_window_s)

        limits = (SharedLimits if settings.state_url else LocalLimits)(
            *([settings.state_url] if settings.state_url else []), per_minute=settings.rate_limit_per_minute,
            budget=settings.key_query_budget, alert_texts=settings.alert_texts, window_s=settings.alert_window_s,
            on_alert=on_alert)
        state.update(model=model, batcher=batcher, tokenizer=tokenizer, limits=limits,
                     keys=open_key_store(run_dir, keys_file=settings.keys_file, state_url=settings.state_url,
                                         refresh_s=settings.keys_refresh_s),
                     log=RequestLog(log_url, text_policy=settings.log_text, privacy=config.privacy,
                                    redact_backlog_texts=settings.log_redact_backlog_texts,
                                    salt=_log_salt(run_dir)),
                     executor=batcher._executor)
        if settings.auth and not state["keys"].active():
            log.warning("no API keys yet: every request will get 401 (create one: trustfm serve keys create %s)",
                        run_dir)
        state["ready"] = True
        log.info("ready: %s (%s model on %s, %d active keys, log %s)", run_dir.name,
                 model.predictor.meta.get("format", "torch"), model.backend,
                 len(state["keys"].active()), state["log"].safe_url.split(":", 1)[0])
        yield
        state["ready"] = False
        await batcher.stop()  # in-flight requests finish; their log rows are committed before they answer
        state["log"].close()
        state["limits"].close()
        state["keys"].close()
        log.info("stopped: every answered request is in the log")

    app = FastAPI(title="trustfm", version="1", lifespan=lifespan,
                  description=f"Predictions of the audited model in {run_dir.name}.")
    # innermost: the body is read (bounded) before anything parses it
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            where, message = "body", "not valid JSON"
        return _error(422, "invalid_request", f"{where}: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:
            # Starlette's own words for a body it could not decode (bytes that are not UTF-8)
            return _error(400, "invalid_request", "body: not valid UTF-8 JSON")
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # never the message: it may quote the input
        log.error("internal error %s on %s", type(exc).__name__, request.url.path)
        return _error(500, "internal_error", f"{type(exc).__name__}; the request id is in the X-Request-Id header")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        request.state.request_id = str(uuid.uuid4())
        request.state.key_id = None
        path = request.url.path
        endpoint = path if path in (*API_PATHS, "/healthz", "/readyz", "/metrics") else "other"
        response = await _guarded(request, call_next, path)
        response.headers["X-Request-Id"] = request.state.request_id
        metrics["requests"].labels(endpoint, str(response.status_code)).inc()
        metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)
        return response

    async def _guarded(request: Request, call_next, path: str):
        try:
            return await _checked(request, call_next, path)
        except _StateUnavailable:
            return _error(503, "state_unavailable", "the shared key and limit store is unreachable; retry shortly",
                          {"Retry-After": "1"})

    async def _checked(request: Request, call_next, path: str):
        if path in API_PATHS:
            if settings.auth:
                keys = state.get("keys")
                if keys is None:
                    return _error(503, "not_ready", "the service is starting")
                key_id = await _off_loop(_check_key, keys, request)
                if key_id is None:
                    return _error(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)",
                                  {"WWW-Authenticate": "Bearer"})
                request.state.key_id = key_id
                wait = await _off_loop(state["limits"].allow, key_id)
                if wait > 0:
                    return _error(429, "rate_limited", f"over {settings.rate_limit_per_minute} requests per minute",
                                  {"Retry-After": str(max(1, round(wait)))})
            if request.method == "POST":
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    return _error(415, "unsupported_media_type", "send the body as application/json")
        return await call_next(request)

    async def _off_loop(func, *args):
        # the shared state answers over the network: wait for it on a thread, not on the event loop
        if settings.state_url is None:
            return func(*args)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return await asyncio.get_running_loop().run_in_executor(None, func, *args)
        except SQLAlchemyError as exc:
            log.error("shared state unreachable (%s): answering 503", type(exc).__name__)
            raise _StateUnavailable from None

    def _limit_texts(texts: list[str], *, one: str | None = None) -> list[str] | Any:
        """``texts`` within the limits, or the 413 answer; ``one`` names the field of a request of one text."""
        if len(texts) > settings.max_texts_per_request:
            return _error(413, "too_many_texts", f"{len(texts)} texts; at most {settings.max_texts_per_request} "
                                                 "per request")
        long = [i for i, t in enumerate(texts) if len(t) > settings.max_chars_per_text]
        if long and settings.too_long == "reject":
            where = one or f"texts[{long[0]}]"
            return _error(413, "text_too_long", f"{where} has {len(texts[long[0]])} characters; at most "
                                                f"{settings.max_chars_per_text} per text")
        return [t[:settings.max_chars_per_text] for t in texts]

    def _decode_images(images: list[str]):
        """(decoded pixels, ``image sha256:...`` stand-ins) of base64 images, or the 4xx answer for the first bad one."""
        import base64
        import binascii
        import hashlib

        from trustfm.data.images import ImageProblem, decode_image

        if len(images) > settings.max_texts_per_request:
            return _error(413, "too_many_images", f"{len(images)} images; at most {settings.max_texts_per_request} "
                                                  "per request")
        limits = state["model"].predictor.inputs.config
        pixels, names = [], []
        for i, encoded in enumerate(images):
            try:
                data = base64.b64decode(encoded, validate=True)
                pixels.append(decode_image(data, limits))
            except (binascii.Error, ValueError) as exc:
                reason = exc.reason if isinstance(exc, ImageProblem) else "not valid base64"
                return _error(422, "invalid_image", f"images[{i}]: {reason}")
            names.append("image sha256:" + hashlib.sha256(data).hexdigest())
        return pixels, names

    async def _in_thread(func, *args):
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    @app.post("/v1/predict", response_model=PredictResponse, responses={
        401: {"description": "no or unknown API key"}, 413: {"description": "too many texts, or a text too long"},
        415: {"description": "not JSON"}, 422: {"description": "invalid body"}, 429: {"description": "rate limited"},
        503: {"description": "at capacity or starting"}})
    async def predict(body: PredictRequest, request: Request):
        """Labels, probabilities, the OOD flag and any output-rule decision for a batch of texts."""
        if not state["ready"]:
            return _error(503, "not_ready", "the service is starting or stopping")
        modality = state["model"].predictor.modality
        if (body.images is not None) != (modality == "image"):
            given, wanted = ("images", "texts") if body.images is not None else ("texts", "images")
            return _error(422, "invalid_request", f"this model classifies {wanted}; the request sent {given}")
        if body.images is not None:
            decoded = await _in_thread(_decode_images, body.images)
            if not isinstance(decoded, tuple):
                return decoded
            inputs, texts = decoded  # the log and the extraction watch see each image's sha256, never its pixels
        else:
            texts = _limit_texts(body.texts)
            if not isinstance(texts, list):
                return texts
            inputs = texts
        key_id = request.state.key_id or "anonymous"
        try:
            within_budget = await _off_loop(state["limits"].spend, key_id, len(texts))
        except _StateUnavailable:
            return _error(503, "state_unavailable", "the shared key and limit store is unreachable; retry shortly",
                          {"Retry-After": "1"})
        if not within_budget:
            return _error(429, "query_budget_exhausted",
                          f"this key's budget of {settings.key_query_budget} texts is spent")
        state["limits"].observe(key_id, texts)
        started = time.perf_counter()
        try:
            answers = await state["batcher"].submit(inputs)
        except QueueFull as exc:
            return _error(503, "at_capacity", str(exc), {"Retry-After": "1"})
        for answer in answers:
            metrics["predictions"].labels(answer["model_label"] if "model_label" in answer else answer["label"]).inc()
            metrics["ood"].inc(bool(answer.get("ood")))
            metrics["abstain"].inc("rule" in answer and answer["label"] is None)
        metrics["texts"].inc(len(texts))
        latency = 1000 * (time.perf_counter() - started)
        # committed before the answer leaves: an acknowledged request is in the log
        await asyncio.wrap_future(state["log"].submit(
            request_id=request.state.request_id, endpoint="predict", key_id=request.state.key_id, status=200,
            latency_ms=latency, model_sha256=model_hash, texts=texts, answers=answers, groups=body.groups))
        return PredictResponse(request_id=request.state.request_id, model_sha256=model_hash,
                               predictions=answers)

    @app.post("/v1/explain", response_model=ExplainResponse)
    async def explain(body: ExplainRequest, request: Request):
        """Word attributions for one text: how much each word moves the predicted class's probability."""
        from trustfm.serve.explain import occlusion_attributions

        if state["model"].predictor.modality != "text":
            return _error(422, "invalid_request", "/v1/explain scores the words of a text; this model classifies "
                                                  "images (its attributions are in the run's attributions audit)")
        texts = _limit_texts([body.text], one="text")
        if not isinstance(texts, list):
            return texts
        # on the model's own thread: the model is not shared between threads
        result = await asyncio.get_running_loop().run_in_executor(
            state["executor"], occlusion_attributions, state["model"], texts[0], body.max_words)
        await asyncio.wrap_future(state["log"].submit(
            request_id=request.state.request_id, endpoint="explain", key_id=request.state.key_id, status=200,
            latency_ms=None, model_sha256=model_hash))
        return ExplainResponse(request_id=request.state.request_id, **result)

    @app.post("/v1/feedback", status_code=201)
    async def feedback(body: FeedbackRequest, request: Request):
        """The true label of an earlier answer (request id and position in that request)."""
        names = state["model"].label_names
        if body.label not in names:
            return _error(422, "invalid_request", f"label: '{body.label}' is not a class of this model ({names})")
        try:
            known = await _in_thread(lambda: state["log"].add_feedback(
                request_id=body.request_id, position=body.position, true_label=body.label,
                key_id=request.state.key_id))
        except ConfigError as exc:
            return _error(409, "conflict", str(exc))
        if not known:
            return _error(404, "not_found", f"no answer {body.position} of request {body.request_id} in the log")
        return {"request_id": body.request_id, "position": body.position, "recorded": True}

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info():
        """Which model this is: run, weight hashes, classes, format, and the gate result at release time."""
        return ModelInfo.from_run(run_dir, state["model"], model_hashes, gate=gate)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state["ready"]:
            return _error(503, "not_ready", "the model is loading or the service is stopping")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        if state.get("batcher") is not None:
            metrics["queue"].set(state["batcher"].queued_texts)
            metrics["redaction_backlog"].set(state["log"].redaction_backlog)
            metrics["unredacted"].set(state["log"].unredacted_texts)
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return PlainTextResponse(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)
        body = generate_latest(registry) + (generate_latest(extra_registry) if extra_registry is not None else b"")
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _check_key(keys, request) -> str | None:
    """The id of the API key the request presents (``X-API-Key`` or ``Authorization: Bearer``), None if none valid."""
    keys.reload_if_changed()
    presented = request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    if presented is None and bearer.lower().startswith("bearer "):
        presented = bearer[7:].strip()
    return keys.check(presented)


def _log_salt(run_dir: Path) -> str:
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


def app_from_environment():
    """uvicorn's factory for ``--workers N``: the run folder and settings come from ``TRUSTFM_SERVE_*``."""
    import os

    settings = ServeSettings.model_validate(json.loads(os.environ["TRUSTFM_SERVE_SETTINGS"]))
    return create_app(os.environ["TRUSTFM_SERVE_RUN"], settings)
