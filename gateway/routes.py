"""The HTTP routes. Handlers stay thin: the work lives in `chat` and `metrics`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from gateway.errors import EngineUnavailable
from gateway.protocol import ChatCompletionRequest
from gateway.state import Services, services

router = APIRouter()
ServicesDep = Annotated[Services, Depends(services)]


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, svc: ServicesDep) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return await svc.chat.create(body)


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


@router.get("/health")
async def health(svc: ServicesDep) -> JSONResponse:
    """Liveness: the event loop answers and the engine has not died.

    A dead engine never comes back in this process, so liveness fails and the
    orchestrator restarts it, rather than leaving it out of rotation forever.
    """
    if svc.engine.healthy():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "engine failed"}, status_code=503)


@router.get("/ready")
async def ready(svc: ServicesDep) -> JSONResponse:
    """The engine is loaded and healthy, and the server is not draining: send traffic here."""
    if svc.engine.healthy() and not svc.lifecycle.draining:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


@router.get("/metrics")
async def metrics(svc: ServicesDep) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
