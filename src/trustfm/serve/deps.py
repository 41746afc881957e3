"""The service's dependencies (FastAPI ``Depends``): the state, its parts, the caller's key, and the checks.

Routes declare what they use (``state: ServiceState = Depends(service_state)``, ``limits = Depends(key_limits)``,
...); a test replaces any of them with ``app.dependency_overrides[...]``. Authentication and the rate limit
(:func:`authenticate`) must answer before the body is read (a caller without a key learns nothing, not even
that its JSON was invalid), so the guard middleware runs them first, resolving :func:`key_store` and
:func:`key_limits` through the same overrides; routes then read the caller's key id with :func:`api_key`.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from trustfm.serve.state import ServiceState

log = logging.getLogger("trustfm.serve")


class ApiError(Exception):
    """An answer other than the route's: ``status`` (4xx or 503), ``error`` (a code) and ``detail`` (one line)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.detail, self.headers)


def error_response(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    """The service's one error shape: ``{"error": ..., "detail": ...}``."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def service_state(request: Request) -> ServiceState:
    """The app's :class:`~trustfm.serve.state.ServiceState`."""
    return request.app.state.service


def ready_state(request: Request) -> ServiceState:
    """The state, once the model is loaded (503 while starting or stopping)."""
    state = service_state(request)
    if not state.ready:
        raise ApiError(503, "not_ready", "the service is starting or stopping")
    return state


def key_store(request: Request):
    """The API keys (the keys file, or the store shared by replicas); None before start-up."""
    return service_state(request).keys


def key_limits(request: Request):
    """Per-key rate limits, budgets and extraction watch (:class:`~trustfm.serve.limits.Limits`)."""
    return service_state(request).limits


def request_log(request: Request):
    """The request log (:class:`~trustfm.serve.requestlog.RequestLog`)."""
    return service_state(request).log


def api_key(request: Request) -> str | None:
    """The id of the caller's API key (None when the service runs without keys)."""
    return request.state.key_id


def _resolved(request: Request, dependency):
    """``dependency``'s value for ``request``, through ``app.dependency_overrides`` (an override may take the
    request or nothing, as FastAPI allows for one without sub-dependencies)."""
    override = request.app.dependency_overrides.get(dependency)
    if override is None:
        return dependency(request)
    import inspect

    return override(request) if inspect.signature(override).parameters else override()


async def off_loop(state: ServiceState, func, *args):
    """``func(*args)``; on a thread when the state is shared (it waits on the database, not on the event loop).
    A database that does not answer is a 503, never a guess."""
    if state.settings.state_url is None:
        return func(*args)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)
    except SQLAlchemyError as exc:
        log.error("shared state unreachable (%s): answering 503", type(exc).__name__)
        raise ApiError(503, "state_unavailable", "the shared key and limit store is unreachable; retry shortly",
                       {"Retry-After": "1"}) from None


def _check_key(keys, request: Request) -> str | None:
    keys.reload_if_changed()
    presented = request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    if presented is None and bearer.lower().startswith("bearer "):
        presented = bearer[7:].strip()
    return keys.check(presented)


async def authenticate(request: Request) -> str:
    """The caller's key id, after the key check (``X-API-Key`` or ``Authorization: Bearer``) and the rate limit;
    ApiError 401, 429 or 503 otherwise."""
    state = service_state(request)
    keys = _resolved(request, key_store)
    if keys is None:
        raise ApiError(503, "not_ready", "the service is starting")
    # the shared store is re-read every keys_refresh_s; between reads the check needs no network
    key_id = await off_loop(state, _check_key, keys, request) if keys.refresh_due() else _check_key(keys, request)
    if key_id is None:
        raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)",
                       {"WWW-Authenticate": "Bearer"})
    limits = _resolved(request, key_limits)
    wait = limits.try_allow(key_id)  # a token this process holds: no network
    if wait is None:
        wait = await off_loop(state, limits.allow, key_id)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"over {state.settings.rate_limit_per_minute} requests per minute",
                       {"Retry-After": str(max(1, round(wait)))})
    return key_id
