"""`POST /v1/responses`, and the stored responses' `GET` and `DELETE`.

A Responses request, with the conversation its `previous_response_id` stored,
is translated into the chat completion it asks for (`gateway/responses/translate.py`)
and runs exactly as `/v1/chat/completions` runs it; only the framing differs:
the Responses events, or the response object (`gateway/responses/`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter

from engines.base import FinishReason
from gateway.errors import ResponseNotFound
from gateway.responses.events import ResponseEvents, finished, head, usage_body
from gateway.responses.output import Output, new_id
from gateway.responses.protocol import InputItem, ResponsesRequest
from gateway.responses.translate import chat_request
from gateway.serving.chat import ChatCompletions
from gateway.serving.generation import Generation
from gateway.serving.response_store import ResponseStore
from gateway.serving.runs import Run, Streamed, Whole
from gateway.text.streaming import Delta

_ITEMS = TypeAdapter(list[InputItem])
Keep = Callable[[dict[str, Any]], None]  # stores a finished response, or not


@dataclass(frozen=True, slots=True)
class Responses:
    chat: ChatCompletions
    store: ResponseStore

    async def create(self, body: ResponsesRequest, request_id: str) -> Streamed | Whole:
        body.reject_unsupported()
        earlier = self._conversation(body.previous_response_id)
        items = body.input
        chat = chat_request(body, [*_ITEMS.validate_python(earlier), *items])
        run = await self.chat.start(chat, request_id)
        fields = head(body, new_id("resp"))
        keep: Keep = _forget
        if body.store:
            given = [item.model_dump(by_alias=True, exclude_none=True) for item in items]
            keep = functools.partial(self._keep, [*earlier, *given])
        if body.stream:
            events = ResponseEvents(fields, keep)
            return Streamed(run, events, events.prelude(), True, False)
        return Whole(run, functools.partial(_body, run, fields, keep))

    def retrieve(self, response_id: str) -> dict[str, Any]:
        stored = self.store.get(response_id)
        if stored is None:
            raise _not_found(response_id)
        return stored.response

    def delete(self, response_id: str) -> dict[str, Any]:
        if not self.store.delete(response_id):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    def _conversation(self, previous_id: str | None) -> list[dict[str, Any]]:
        if previous_id is None:
            return []
        stored = self.store.get(previous_id)
        if stored is None:
            raise ResponseNotFound(
                f"Previous response with id '{previous_id}' not found: it was not stored, "
                "was deleted, or was evicted (stored responses live in memory only).",
                param="previous_response_id",
            )
        return stored.conversation

    def _keep(self, input_items: list[dict[str, Any]], response: dict[str, Any]) -> None:
        self.store.put(response, input_items)


def _forget(response: dict[str, Any]) -> None:
    pass


def _not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{response_id}' not found.", param="response_id")


class _Into:
    """The `Outlet` of a non-streamed response: its output items, built as a stream would."""

    busy = False

    def __init__(self) -> None:
        self.output = Output()

    def delta(self, generation: Generation, delta: Delta) -> None:
        self.output.add(delta)

    async def finished(self, generation: Generation) -> None:
        cut = generation.choice.finish_reason is FinishReason.LENGTH
        self.output.close("incomplete" if cut else "completed")


async def _body(run: Run, fields: dict[str, Any], keep: Keep) -> bytes:
    into = _Into()
    await run.drive(into)
    choice = run.generations[0].choice
    counts = usage_body(run.usage().body(), choice.reasoning_tokens)
    reason = choice.finish_reason
    response = finished(fields, into.output, reason, counts)
    keep(response)
    return orjson.dumps(response)
