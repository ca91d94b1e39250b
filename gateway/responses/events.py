"""A response object, and the events of a streamed one.

Streamed, one response is:

    response.created, response.in_progress,
    per output item: response.output_item.added, its content events, response.output_item.done,
    response.completed | response.incomplete (cut short by max_output_tokens) | response.failed

each event with its `sequence_number`, and no `[DONE]` (OpenAI sends none here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from engines.base import FinishReason
from gateway.errors import GatewayError
from gateway.responses.output import Output
from gateway.responses.protocol import ResponsesRequest
from gateway.text.streaming import ChoiceStream, Delta


def head(body: ResponsesRequest, response_id: str) -> dict[str, Any]:
    """The fields of the response that the request sets: the same in every event."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": body.model,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "reasoning": body.reasoning.model_dump() if body.reasoning else None,
        "store": body.store,
        "temperature": body.temperature,
        "text": body.text.model_dump(by_alias=True, exclude_none=True),
        "tool_choice": body.tool_choice
        if isinstance(body.tool_choice, str)
        else body.tool_choice.model_dump(),
        "tools": [tool.model_dump() for tool in body.tools or []],
        "top_p": body.top_p,
        "truncation": body.truncation or "disabled",
        "user": body.user,
        "background": False,
    }


def usage_body(usage: dict[str, Any], reasoning_tokens: int) -> dict[str, Any]:
    """Responses' usage from a chat completion's (`Usage.body()`)."""
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": usage["prompt_tokens_details"]["cached_tokens"]},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage["total_tokens"],
    }


def finished(
    head: dict[str, Any], output: Output, reason: FinishReason | None, usage: dict[str, Any]
) -> dict[str, Any]:
    """The response once its choice has ended (its open item closed)."""
    cut = reason is FinishReason.LENGTH
    return head | {
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "output": output.items,
        "usage": usage,
    }


def failed(head: dict[str, Any], output: Output, error: GatewayError) -> dict[str, Any]:
    return head | {
        "status": "failed",
        "error": {"code": error.code or "server_error", "message": error.message},
        "incomplete_details": None,
        "output": output.items,
        "usage": None,
    }


class ResponseEvents:
    """The events of one streamed response (a `Chunks` for `gateway.serving.runs`).

    `done` receives the response as its last event says it (completed, incomplete
    or failed): the serving layer stores it.
    """

    def __init__(self, head: dict[str, Any], done: Callable[[dict[str, Any]], None]) -> None:
        self._head = head
        self._done = done
        self._sequence = 0
        self._frames: list[bytes] = []
        self._output = Output(self._event)
        self._reason: FinishReason | None = None
        self._reasoning_tokens = 0

    def prelude(self) -> list[bytes]:
        response = self._head | {
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "output": [],
            "usage": None,
        }
        self._event("response.created", {"response": response})
        self._event("response.in_progress", {"response": response})
        return [self._take()]

    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes:
        self._output.add(delta)
        return self._take()

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes:
        self._reason = choice.finish_reason
        self._reasoning_tokens = choice.reasoning_tokens
        cut = self._reason is FinishReason.LENGTH
        self._output.close("incomplete" if cut else "completed")
        return self._take()

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The last event: the whole response, with its usage (asked for once, at the end)."""
        counts = usage_body(usage, self._reasoning_tokens)
        response = finished(self._head, self._output, self._reason, counts)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        self._event(kind, {"response": response})
        self._done(response)
        return self._take()

    def error(self, error: GatewayError) -> bytes:
        self._output.close("incomplete")
        response = failed(self._head, self._output, error)
        self._event("response.failed", {"response": response})
        self._done(response)
        return self._take()

    def end(self) -> bytes:
        return b""  # the terminal event was the last

    def _event(self, kind: str, fields: dict[str, Any]) -> None:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self._sequence})
        self._sequence += 1
        self._frames.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _take(self) -> bytes:
        frames = b"".join(self._frames)
        self._frames.clear()
        return frames
