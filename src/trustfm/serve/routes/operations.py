"""``GET /v1/model``, ``/healthz``, ``/readyz`` and ``/metrics``: what operators and their tools read."""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations
import os

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from trustfm.serve.deps import ApiError, service_state
from trustfm.serve.schemas import ModelInfo
from trustfm.serve.state import ServiceState

router = APIRouter()


@router.get("/v1/model", response_model=ModelInfo)
async def model_info(state: ServiceState = Depends(service_state)):
    """Which model this is: run, weight hashes, classes, format, and the gate result at release time."""
    return ModelInfo.from_run(state.run_dir, state.model, state.model_hashes, gate=state.gate)


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: ServiceState = Depends(service_state)):
    if not state.ready:
        raise ApiError(503, "not_ready", "the model is loading or the service is stopping")
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(state: ServiceState = Depends(service_state)):
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    state.refresh_gauges()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return PlainTextResponse(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)
    body = generate_latest(state.registry)
    if state.extra_registry is not None:
        body += generate_latest(state.extra_registry)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
