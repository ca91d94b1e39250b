"""A Messages response: the streamed events, or the one message body.

Streamed, one message is:

    message_start, ping,
    per content block: content_block_start, content_block_delta..., content_block_stop,
    message_delta (stop_reason, output tokens), message_stop

Text arrives as `text_delta`s in a text block; each tool call is a `tool_use` block
whose arguments arrive as `input_json_delta`s. The gateway's deltas say which: a
block closes when the other kind, or another call, begins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from engines.base import FinishReason
from gateway.errors import GatewayError, Wire
from gateway.openai.bodies import Collected
from gateway.text.streaming import ChoiceStream, Delta


def stop_reason(choice: ChoiceStream) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for how the choice ended."""
    match choice.finish_reason:
        case FinishReason.LENGTH:
            return "max_tokens", None
        case FinishReason.TOOL_CALLS:
            return "tool_use", None
    matched = choice.stops.matched if choice.stops is not None else None
    return ("stop_sequence", matched) if matched is not None else ("end_turn", None)


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessageEvents:
    """The events of one streamed message (a `Chunks` for `gateway.serving.runs`)."""

    def __init__(self, message_id: str, model: str, output_tokens: Callable[[], int]) -> None:
        """`output_tokens`: the message's count so far, asked for once, as it finishes."""
        self._id = message_id
        self._model = model
        self._output_tokens = output_tokens
        self._blocks = 0  # content blocks started so far
        self._open: str | None = None  # "text", or "tool:<call index>", while a block is open

    def prelude(self, input_tokens: int, cached_tokens: int = 0) -> list[bytes]:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(input_tokens, 0, cached_tokens),
        }
        return [
            _event("message_start", {"type": "message_start", "message": message}),
            _event("ping", {"type": "ping"}),
        ]

    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes:
        frames = []
        if delta.content:
            frames += self._enter("text", {"type": "text", "text": ""})
            text = {"type": "text_delta", "text": delta.content}
            frames.append(self._delta(text))
        for piece in delta.tool_calls:
            block = {
                "type": "tool_use",
                "id": piece.id or "",
                "name": piece.name or "",
                "input": {},
            }
            frames += self._enter(f"tool:{piece.index}", block)
            if piece.arguments:
                frames.append(
                    self._delta({"type": "input_json_delta", "partial_json": piece.arguments})
                )
        return b"".join(frames)

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes:
        reason, sequence = stop_reason(choice)
        output_tokens = self._output_tokens()
        return b"".join(
            [
                *self._close(),
                _event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": reason, "stop_sequence": sequence},
                        "usage": {"output_tokens": output_tokens},
                    },
                ),
                _event("message_stop", {"type": "message_stop"}),
            ]
        )

    def usage(self, usage: dict[str, Any]) -> bytes:
        return b""  # in message_start and message_delta

    def error(self, error: GatewayError) -> bytes:
        """Anthropic's `error` event: the stream's last."""
        return _event("error", error.body(Wire.ANTHROPIC))

    def end(self) -> bytes:
        return b""  # message_stop or error was the last event

    def _enter(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        """Start a block of this kind unless it is the open one."""
        if self._open == kind:
            return []
        frames = self._close()
        self._open = kind
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        frames.append(_event("content_block_start", start))
        return frames

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [
            _event("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})
        ]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        body = {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        return _event("content_block_delta", body)


def message_body(
    out: Collected, message_id: str, model: str, usage: tuple[int, int, int]
) -> dict[str, Any]:
    """The non-streamed message; `usage` is (input, output, cached input) tokens."""
    content: list[dict[str, Any]] = []
    text = "".join(out.content)
    if text or not out.calls:
        content.append({"type": "text", "text": text})
    for call in out.calls:
        function = call["function"]
        try:
            arguments = orjson.loads(function["arguments"] or "{}")
        except orjson.JSONDecodeError:
            continue  # cut short by max_tokens: an unfinished call is no call
        content.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}
        )
    reason, sequence = stop_reason(out.choice)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(*usage),
    }


def _usage(input_tokens: int, output_tokens: int, cached_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens - cached_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cached_tokens,
        "cache_creation_input_tokens": 0,
    }
