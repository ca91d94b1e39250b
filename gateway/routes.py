"""The HTTP routes. Handlers stay thin: the work lives in `chat` and `metrics`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from gateway import access_log
from gateway.errors import EngineUnavailable
from gateway.protocol import ChatCompletionRequest
from gateway.state import Services, services


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error shape, as `GatewayError.body()` writes it (for the OpenAPI document)."""

    error: ErrorDetail


class Status(BaseModel):
    status: str


# The OpenAPI document tells the truth: every error has OpenAI's shape, and an
# invalid request is 400 (FastAPI would document a 422 that is never sent).
_ERROR: dict[str, Any] = {"model": ErrorBody, "description": "An error, in OpenAI's shape"}
router = APIRouter(responses={"default": _ERROR})
ServicesDep = Annotated[Services, Depends(services)]
RequestIdDep = Annotated[str, Depends(access_log.request_id)]


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}, 400: _ERROR},
)
async def chat_completions(
    body: ChatCompletionRequest, svc: ServicesDep, request_id: RequestIdDep, request: Request
) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return await svc.chat.create(body, request_id, request.receive)


@router.get("/v1/models")
async def list_models(svc: ServicesDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": svc.model_name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "trtllm-gateway",
                "max_model_len": svc.engine.limits().max_seq_len,
            }
        ],
    }


@router.get("/health", response_model=Status, responses={503: {"model": Status}})
async def health(svc: ServicesDep) -> JSONResponse:
    """Liveness: the event loop answers and the engine has not died.

    A dead engine never comes back in this process, so liveness fails and the
    orchestrator restarts it, rather than leaving it out of rotation forever.
    """
    if svc.engine.healthy():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "engine failed"}, status_code=503)


@router.get("/ready", response_model=Status, responses={503: {"model": Status}})
async def ready(svc: ServicesDep) -> JSONResponse:
    """The engine is loaded and healthy, and the server is not draining: send traffic here."""
    if svc.engine.healthy() and not svc.lifecycle.draining:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(svc: ServicesDep) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
