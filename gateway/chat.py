"""`POST /v1/chat/completions`: validate, render, fit, then stream or collect.

Everything that can be refused is refused before the response starts (fail
before sending 200): shutting down, unknown model, unsupported parameters,
limits, template errors, context length, admission. Errors after that are sent
as an SSE error event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field

import orjson
from sse_starlette import EventSourceResponse
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from engines.base import Engine, GenerationRequest, SamplingParams
from gateway.admission import Admission, Ticket
from gateway.errors import (
    ClientDisconnected,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    sse_event,
)
from gateway.generation import Generation
from gateway.lengths import fit_max_tokens
from gateway.lifecycle import Lifecycle
from gateway.metrics import Metrics
from gateway.prompts import PromptRenderer
from gateway.protocol import ChatCompletionRequest
from gateway.settings import Settings
from gateway.stops import StopMatcher
from gateway.streaming import DONE, ChoiceStream, ChunkEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatCompletions:
    engine: Engine
    prompts: PromptRenderer
    metrics: Metrics
    settings: Settings
    model_name: str
    admission: Admission
    lifecycle: Lifecycle
    _sequence: Iterator[int] = field(default_factory=itertools.count, init=False)

    async def create(
        self, body: ChatCompletionRequest, request_id: str, receive: Receive
    ) -> Response:
        """`request_id` is the HTTP request's (X-Request-Id): the engine sees it, suffixed."""
        metrics = self.metrics.request()  # the clock starts at arrival
        self.lifecycle.ensure_open()
        self._validate(body)
        prompt_ids = await self.prompts.render([m.template_dict() for m in body.messages])
        # Clients reuse X-Request-Id (retries), and engines key requests by id: the
        # suffix keeps engine ids unique. The body's id is our own, never client text.
        engine_id = f"{request_id}-{next(self._sequence)}"
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        request = GenerationRequest(engine_id, prompt_ids, self._sampling(body, prompt_ids))
        stops = StopMatcher(body.stop_strings) if body.stop_strings else None
        choice = ChoiceStream(0, self.prompts.detokenizer(prompt_ids), stops)
        ticket = self.admission.admit(len(prompt_ids))
        generation = Generation(
            self.engine, request, choice, metrics, ticket, self.lifecycle.watch()
        )
        encoder = ChunkEncoder(completion_id, int(time.time()), body.model)
        if body.stream:
            frames = _sse_frames(generation, encoder, body.include_usage)
            return _ChatEventStream(frames, ticket, self.settings)
        try:
            return await _unless_disconnected(
                _complete(generation, completion_id, body.model), receive
            )
        finally:
            ticket.release()

    def _validate(self, body: ChatCompletionRequest) -> None:
        settings = self.settings
        if body.model != self.model_name:
            raise ModelNotFound(f"The model `{body.model}` does not exist.", param="model")
        body.reject_unsupported()
        if len(body.messages) > settings.max_messages:
            raise InvalidRequest(
                f"at most {settings.max_messages} messages are allowed", param="messages"
            )
        if sum(len(m.content or "") for m in body.messages) > settings.max_prompt_chars:
            raise InvalidRequest(
                f"the messages exceed {settings.max_prompt_chars} characters", param="messages"
            )
        stops = body.stop_strings
        if len(stops) > settings.max_stop_strings:
            raise InvalidRequest(
                f"at most {settings.max_stop_strings} stop strings are allowed", param="stop"
            )
        if any(not stop or len(stop) > settings.max_stop_chars for stop in stops):
            raise InvalidRequest(
                f"stop strings must have 1 to {settings.max_stop_chars} characters", param="stop"
            )

    def _sampling(self, body: ChatCompletionRequest, prompt_ids: list[int]) -> SamplingParams:
        max_tokens = fit_max_tokens(
            len(prompt_ids),
            body.requested_max_tokens,
            self.engine.limits(),
            strict=self.settings.strict_max_tokens,
        )
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k or 0,
            seed=body.seed,
            stop_token_ids=self.prompts.eos_token_ids,
        )


class _ChatEventStream(EventSourceResponse):
    """The SSE response of one completion; its admission ticket is released however it ends.

    The body generator may never start (the client left before the first send),
    and then its own `finally` never runs: this `finally` always does.

    Divergence from sse-starlette: `send_timeout` bounds keep-alive comments only.
    sse-starlette opens a cancel scope around every send, which cost about a tenth
    of the gateway's CPU per streamed token. A client that stops reading still
    fills the transport, so the next keep-alive blocks and times out, and the
    stream ends: a stalled client is dropped after keep-alive + send timeout.
    """

    def __init__(self, frames: AsyncIterator[bytes], ticket: Ticket, settings: Settings) -> None:
        super().__init__(
            frames,
            sep="\n",
            ping=settings.sse_keepalive_seconds,
            send_timeout=settings.send_timeout_seconds,
            # sse-starlette cancels streams on SIGTERM after this long; the drain
            # (gateway/lifecycle.py) ends them with an error event before that.
            shutdown_grace_period=settings.shutdown_grace_seconds + 5,
        )
        self._ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._ticket.release()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if message.get("body", b"")[:1] == b":":  # a keep-alive comment
            await super()._send_with_timeout(send, message)
        else:
            await send(message)


async def _sse_frames(
    generation: Generation, encoder: ChunkEncoder, include_usage: bool
) -> AsyncIterator[bytes]:
    choice = generation.choice
    yield encoder.role(choice.index)
    try:
        async for text in generation.deltas():
            yield encoder.content(choice.index, text)
        yield encoder.finish(choice.index, choice.finish_reason or "stop")
        if include_usage and generation.usage is not None:
            yield encoder.usage(generation.usage.body())
    except GatewayError as error:
        yield sse_event(error)
    except Exception:
        # The stream has begun: the error can only travel as an event.
        log.exception("stream failed")
        yield sse_event(GatewayError("internal server error"))
    yield DONE


async def _unless_disconnected(work: Awaitable[Response], receive: Receive) -> Response:
    """`work`, or a 499 once the client hangs up first: its request is aborted at once.

    Starlette does not cancel a handler whose client left, so without this a
    gone client's non-streamed completion would run on to `max_tokens`.
    """
    task = asyncio.ensure_future(work)

    async def cancel_on_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(cancel_on_disconnect())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this handler itself is being cancelled
        raise ClientDisconnected("the client closed the connection") from None
    finally:
        watcher.cancel()


async def _complete(generation: Generation, completion_id: str, model: str) -> Response:
    text = "".join([piece async for piece in generation.deltas()])
    assert generation.usage is not None  # set when deltas() ends
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": generation.choice.index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": generation.choice.finish_reason,
            }
        ],
        "usage": generation.usage.body(),
    }
    return Response(orjson.dumps(body), media_type="application/json")
