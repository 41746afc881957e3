"""``POST /v1/predict`` and ``POST /v1/explain``: the model's answers and their word attributions."""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations
import asyncio
import time

from fastapi import APIRouter, Depends, Request

from trustfm.serve.deps import ApiError, api_key, key_limits, off_loop, ready_state, request_log
from trustfm.serve.schemas import ExplainRequest, ExplainResponse, PredictRequest, PredictResponse
from trustfm.serve.state import ServiceState

router = APIRouter()


def limit_texts(state: ServiceState, texts: list[str], *, one: str | None = None) -> list[str]:
    """``texts`` within the limits (over-long ones cut under ``too_long: truncate``); ApiError 413 otherwise.
    ``one`` names the field of a request of one text."""
    settings = state.settings
    if len(texts) > settings.max_texts_per_request:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts; at most {settings.max_texts_per_request} "
                                              "per request")
    long = [i for i, t in enumerate(texts) if len(t) > settings.max_chars_per_text]
    if long and settings.too_long == "reject":
        where = one or f"texts[{long[0]}]"
        raise ApiError(413, "text_too_long", f"{where} has {len(texts[long[0]])} characters; at most "
                                             f"{settings.max_chars_per_text} per text")
    return [t[:settings.max_chars_per_text] for t in texts]


def decode_images(state: ServiceState, images: list[str]):
    """(decoded pixels, ``image sha256:...`` stand-ins) of base64 images; ApiError 4xx for the first bad one."""
    import base64
    import binascii
    import hashlib

    from trustfm.data.images import ImageProblem, decode_image

    if len(images) > state.settings.max_texts_per_request:
        raise ApiError(413, "too_many_images", f"{len(images)} images; at most "
                                               f"{state.settings.max_texts_per_request} per request")
    limits = state.model.predictor.inputs.config
    pixels, names = [], []
    for i, encoded in enumerate(images):
        try:
            data = base64.b64decode(encoded, validate=True)
            pixels.append(decode_image(data, limits))
        except (binascii.Error, ValueError) as exc:
            reason = exc.reason if isinstance(exc, ImageProblem) else "not valid base64"
            raise ApiError(422, "invalid_image", f"images[{i}]: {reason}") from None
        names.append("image sha256:" + hashlib.sha256(data).hexdigest())
    return pixels, names


@router.post("/v1/predict", response_model=PredictResponse, responses={
    401: {"description": "no or unknown API key"}, 413: {"description": "too many texts, or a text too long"},
    415: {"description": "not JSON"}, 422: {"description": "invalid body"}, 429: {"description": "rate limited"},
    503: {"description": "at capacity or starting"}})
async def predict(body: PredictRequest, request: Request, state: ServiceState = Depends(ready_state),
                  limits=Depends(key_limits), log=Depends(request_log), key_id=Depends(api_key)):
    """Labels, probabilities, the OOD flag and any output-rule decision for a batch of texts."""
    from trustfm.serve.batcher import QueueFull

    modality = state.model.predictor.modality
    if (body.images is not None) != (modality == "image"):
        given, wanted = ("images", "texts") if body.images is not None else ("texts", "images")
        raise ApiError(422, "invalid_request", f"this model classifies {wanted}; the request sent {given}")
    if body.images is not None:
        # the log and the extraction watch see each image's sha256, never its pixels
        inputs, texts = await asyncio.get_running_loop().run_in_executor(None, decode_images, state, body.images)
    else:
        texts = inputs = limit_texts(state, body.texts)
    budget_key = key_id or "anonymous"
    if limits.budget is not None and not await off_loop(state, limits.spend, budget_key, len(texts)):
        raise ApiError(429, "query_budget_exhausted", f"this key's budget of {limits.budget} texts is spent")
    limits.observe(budget_key, texts)
    started = time.perf_counter()
    try:
        answers = await state.batcher.submit(inputs)
    except QueueFull as exc:
        raise ApiError(503, "at_capacity", str(exc), {"Retry-After": "1"}) from None
    metrics = state.metrics
    for answer in answers:
        metrics["predictions"].labels(answer["model_label"] if "model_label" in answer else answer["label"]).inc()
        metrics["ood"].inc(bool(answer.get("ood")))
        metrics["abstain"].inc("rule" in answer and answer["label"] is None)
    metrics["texts"].inc(len(texts))
    latency = 1000 * (time.perf_counter() - started)
    # committed before the answer leaves: an acknowledged request is in the log
    await asyncio.wrap_future(log.submit(
        request_id=request.state.request_id, endpoint="predict", key_id=key_id, status=200, latency_ms=latency,
        model_sha256=state.model_hash, texts=texts, answers=answers, groups=body.groups))
    return PredictResponse(request_id=request.state.request_id, model_sha256=state.model_hash, predictions=answers)


@router.post("/v1/explain", response_model=ExplainResponse)
async def explain(body: ExplainRequest, request: Request, state: ServiceState = Depends(ready_state),
                  log=Depends(request_log), key_id=Depends(api_key)):
    """Word attributions for one text: how much each word moves the predicted class's probability."""
    from trustfm.serve.explain import occlusion_attributions

    if state.model.predictor.modality != "text":
        raise ApiError(422, "invalid_request", "/v1/explain scores the words of a text; this model classifies "
                                               "images (its attributions are in the run's attributions audit)")
    texts = limit_texts(state, [body.text], one="text")
    # on the model's own thread: the model is not shared between threads
    result = await asyncio.get_running_loop().run_in_executor(
        state.batcher._executor, occlusion_attributions, state.model, texts[0], body.max_words)
    await asyncio.wrap_future(log.submit(
        request_id=request.state.request_id, endpoint="explain", key_id=key_id, status=200, latency_ms=None,
        model_sha256=state.model_hash))
    return ExplainResponse(request_id=request.state.request_id, **result)
