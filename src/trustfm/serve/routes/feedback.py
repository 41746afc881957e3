"""``POST /v1/feedback``: the true label of an earlier answer, for monitoring and re-audits."""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations
import asyncio

from fastapi import APIRouter, Depends

from trustfm.errors import ConfigError
from trustfm.serve.deps import ApiError, api_key, request_log, service_state
from trustfm.serve.schemas import FeedbackRequest
from trustfm.serve.state import ServiceState

router = APIRouter()


@router.post("/v1/feedback", status_code=201)
async def feedback(body: FeedbackRequest, state: ServiceState = Depends(service_state), log=Depends(request_log),
                   key_id=Depends(api_key)):
    """The true label of an earlier answer (request id and position in that request)."""
    names = state.model.label_names
    if body.label not in names:
        raise ApiError(422, "invalid_request", f"label: '{body.label}' is not a class of this model ({names})")
    try:
        known = await asyncio.get_running_loop().run_in_executor(None, lambda: log.add_feedback(
            request_id=body.request_id, position=body.position, true_label=body.label, key_id=key_id))
    except ConfigError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    if not known:
        raise ApiError(404, "not_found", f"no answer {body.position} of request {body.request_id} in the log")
    return {"request_id": body.request_id, "position": body.position, "recorded": True}
