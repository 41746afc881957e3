"""The inference service: FastAPI over one :class:`~trustfm.serve.model.ServingModel`, micro-batched.

``create_app(run_dir, settings)`` builds it; ``trustfm serve`` runs it under uvicorn. Endpoints:
``POST /v1/predict``, ``POST /v1/explain``, ``POST /v1/feedback``, ``GET /v1/model``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (Prometheus), in the routers of :mod:`trustfm.serve.routes`. Every request is authenticated by an API key
(``Authorization: Bearer tfm_...`` or ``X-API-Key``) unless ``auth`` is off, limited in size and
rate, and logged to the request log without its raw text. Errors are one JSON line
``{"error": ..., "detail": ...}`` with a 4xx status; nothing the client sends produces a 500.
"""

# no `from __future__ import annotations`: FastAPI reads the annotations of the handlers defined in create_app
# (fastapi is an optional dependency, imported there), so they must be evaluated where they are defined
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from trustfm.errors import ConfigError
from trustfm.serve.settings import ServeSettings

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
            from trustfm.serve.deps import error_response

            response = error_response(413, "too_large", f"the body is over {self.max_bytes} bytes")
            return await response(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


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


def create_app(run_dir: str | Path, settings: ServeSettings | None = None, *, extra_registry=None):
    """The FastAPI application serving ``run_dir``'s model under ``settings``; ``/metrics`` also serves
    ``extra_registry`` (a Prometheus registry), when given.

    Its state is one :class:`~trustfm.serve.state.ServiceState` (``app.state.service``), opened in the lifespan;
    its routes are the routers of :mod:`trustfm.serve.routes`, reaching the state through the dependencies of
    :mod:`trustfm.serve.deps`.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from trustfm.serve.deps import ApiError, authenticate, error_response
    from trustfm.serve.routes import feedback, inference, operations
    from trustfm.serve.state import ServiceState

    run_dir = Path(run_dir)
    settings = settings or ServeSettings()
    state = ServiceState.for_run(run_dir, settings, model_hashes=check_model_files(run_dir),
                                 gate=check_release_gate(run_dir, settings), extra_registry=extra_registry)

    @asynccontextmanager
    async def lifespan(app):
        await state.open()
        yield
        await state.close()

    app = FastAPI(title="trustfm", version="1", lifespan=lifespan,
                  description=f"Predictions of the audited model in {run_dir.name}.")
    app.state.service = state
    for router in (inference.router, feedback.router, operations.router):
        app.include_router(router)
    # innermost: the body is read (bounded) before anything parses it
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            where, message = "body", "not valid JSON"
        return error_response(422, "invalid_request", f"{where}: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:
            # Starlette's own words for a body it could not decode (bytes that are not UTF-8)
            return error_response(400, "invalid_request", "body: not valid UTF-8 JSON")
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # never the message: it may quote the input
        log.error("internal error %s on %s", type(exc).__name__, request.url.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}; the request id is in the X-Request-Id "
                                                     "header")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Request id and metrics for every request; for the API, the key and rate limit before the body is
        read, then JSON only."""
        started = time.perf_counter()
        request.state.request_id = str(uuid.uuid4())
        request.state.key_id = None
        path = request.url.path
        endpoint = path if path in (*API_PATHS, "/healthz", "/readyz", "/metrics") else "other"
        try:
            if path in API_PATHS and settings.auth:
                request.state.key_id = await authenticate(request)
            if path in API_PATHS and request.method == "POST":
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        except ApiError as exc:
            response = exc.response()
        else:
            response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        state.metrics["requests"].labels(endpoint, str(response.status_code)).inc()
        state.metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)
        return response

    return app


def app_from_environment():
    """uvicorn's factory for ``--workers N``: the run folder and settings come from ``TRUSTFM_SERVE_*``."""
    import os

    settings = ServeSettings.model_validate(json.loads(os.environ["TRUSTFM_SERVE_SETTINGS"]))
    return create_app(os.environ["TRUSTFM_SERVE_RUN"], settings)
