"""The HTTP routes. Handlers stay thin: the work lives in `chat`, `completions` and `metrics`.

FastAPI serves every route here but the two completion POSTs: `COMPLETION_ROUTES`
hands their handlers to `gateway.http.completion_routes`, which calls them without
FastAPI's per-request machinery. Their declarations here are what the OpenAPI
document shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from gateway.anthropic.protocol import CountTokensRequest, MessagesRequest
from gateway.errors import EngineUnavailable, InvalidRequest, ModelNotFound, Wire
from gateway.http import access_log
from gateway.http.completion_routes import CompletionRoute, PathRoute
from gateway.http.responses import respond
from gateway.http.state import Services, services
from gateway.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from gateway.responses.protocol import ResponsesRequest
from gateway.triton.protocol import GenerateRequest, ModelPath


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
    body: ChatCompletionRequest, svc: ServicesDep, request_id: RequestIdDep
) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return respond(await svc.chat.create(body, request_id), svc.settings)


@router.post(
    "/v1/completions",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}, 400: _ERROR},
)
async def completions(
    body: CompletionRequest, svc: ServicesDep, request_id: RequestIdDep
) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return respond(await svc.completions.create(body, request_id), svc.settings)


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorBody(BaseModel):
    """Anthropic's error shape, as `GatewayError.body(Wire.ANTHROPIC)` writes it."""

    type: Literal["error"]
    error: AnthropicErrorDetail


# Anthropic's Messages API: errors on these routes take Anthropic's shape.
_ANTHROPIC_ERROR: dict[str, Any] = {
    "model": AnthropicErrorBody,
    "description": "An error, in Anthropic's shape",
}


@router.post(
    "/v1/messages",
    response_model=None,
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: _ANTHROPIC_ERROR,
        "default": _ANTHROPIC_ERROR,
    },
)
async def messages(body: MessagesRequest, svc: ServicesDep, request_id: RequestIdDep) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return respond(await svc.messages.create(body, request_id), svc.settings)


@router.post(
    "/v1/messages/count_tokens", responses={400: _ANTHROPIC_ERROR, "default": _ANTHROPIC_ERROR}
)
async def count_tokens(
    body: CountTokensRequest, svc: ServicesDep, request_id: RequestIdDep
) -> Response:
    return JSONResponse(await svc.messages.count_tokens(body))


@router.post(
    "/v1/responses",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}, 400: _ERROR},
)
async def create_response(
    body: ResponsesRequest, svc: ServicesDep, request_id: RequestIdDep
) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    return respond(await svc.responses.create(body, request_id), svc.settings)


@router.get("/v1/responses/{response_id}", responses={404: _ERROR})
async def retrieve_response(response_id: str, svc: ServicesDep) -> Response:
    """A stored response (kept in memory: a restart loses it)."""
    return Response(
        orjson.dumps(svc.responses.retrieve(response_id)), media_type="application/json"
    )


@router.delete("/v1/responses/{response_id}", responses={404: _ERROR})
async def delete_response(response_id: str, svc: ServicesDep) -> dict[str, Any]:
    return svc.responses.delete(response_id)


# Triton's generate API: the model, and optionally its version, in the path (Triton's own
# pattern). Served by `CompletionRoutes` alone, so not in the OpenAPI document.
TRITON_GENERATE = re.compile(
    r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]+))?/(?P<kind>generate(?:_stream)?)"
)


async def triton_generate(
    path: Mapping[str, str | None], body: GenerateRequest, svc: Services, request_id: str
) -> Response:
    if not svc.engine.healthy():
        raise EngineUnavailable("the engine is not ready")
    target = ModelPath(path["model"] or "", path["version"], path["kind"] == "generate_stream")
    return respond(await svc.triton.create(body, request_id, target), svc.settings)


# As Triton does, any content type: its clients post with `curl -d` (form encoding).
PATH_ROUTES = [
    PathRoute(TRITON_GENERATE, GenerateRequest, triton_generate, Wire.TRITON, json_only=False)
]

COMPLETION_ROUTES = {
    "/v1/chat/completions": CompletionRoute(ChatCompletionRequest, chat_completions),
    "/v1/completions": CompletionRoute(CompletionRequest, completions),
    "/v1/responses": CompletionRoute(ResponsesRequest, create_response),
    "/v1/messages": CompletionRoute(MessagesRequest, messages, Wire.ANTHROPIC),
    "/v1/messages/count_tokens": CompletionRoute(CountTokensRequest, count_tokens, Wire.ANTHROPIC),
}


@router.post("/tokenize", responses={400: _ERROR})
async def tokenize(body: TokenizeRequest, svc: ServicesDep) -> dict[str, Any]:
    """A prompt's token ids, or the messages' through the chat template (vLLM's shape)."""
    _check_model(body.model, svc)
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("give either 'prompt' or 'messages'", param="prompt")
    if body.messages is not None:
        messages = [m.template_dict() for m in body.messages]
        ids = await svc.prompts.render(messages, add_generation_prompt=body.add_generation_prompt)
    else:
        assert body.prompt is not None
        ids = await svc.prompts.encode(body.prompt, add_special_tokens=body.add_special_tokens)
    return {"count": len(ids), "max_model_len": svc.limits.max_seq_len, "tokens": ids}


@router.post("/detokenize", responses={400: _ERROR})
async def detokenize(body: DetokenizeRequest, svc: ServicesDep) -> dict[str, Any]:
    _check_model(body.model, svc)
    if any(token >= svc.prompts.vocab_size for token in body.tokens):
        raise InvalidRequest(
            f"token ids must be below the vocabulary size, {svc.prompts.vocab_size}",
            param="tokens",
        )
    return {"prompt": svc.prompts.decode(body.tokens)}


def _check_model(model: str | None, svc: Services) -> None:
    if model is not None and model not in svc.model_names:
        raise ModelNotFound(f"The model `{model}` does not exist.", param="model")


@router.get("/v1/models")
async def list_models(svc: ServicesDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model(svc, name) for name in svc.model_names]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, svc: ServicesDep) -> dict[str, Any]:
    """One model (the SDKs' `models.retrieve`); ids may hold slashes ("org/name")."""
    _check_model(model_id, svc)
    return _model(svc, model_id)


def _model(svc: Services, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "trtllm-gateway",
        "max_model_len": svc.limits.max_seq_len,
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


# Probes and scrapers send HEAD: answered as GET is, without the body (uvicorn drops it),
# and left out of the OpenAPI document, which would repeat each operation.
for _path, _endpoint in [
    ("/v1/models", list_models),
    ("/health", health),
    ("/ready", ready),
    ("/metrics", metrics),
]:
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)
