"""A response's output items, built from its choice's deltas as they come.

Items follow the order the model wrote them in: a `reasoning` item while it
thinks, a `message` item for its text, a `function_call` item per call. An item
stays open until the other kind, or another call, begins; each change is an
event for a stream (`emit(type, fields)`), which must encode it at once, since
the item it names changes afterwards. A non-streamed response builds the same
items and drops the events, so both say the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from gateway.text.streaming import Delta
from gateway.text.tool_parsers import ToolCallDelta

Emit = Callable[[str, dict[str, Any]], None]  # (event type, fields)

_PARTS = {"message": "output_text", "reasoning": "reasoning_text"}
_TEXT_EVENTS = {"message": "response.output_text", "reasoning": "response.reasoning_text"}


def _ignore(kind: str, fields: dict[str, Any]) -> None:
    pass


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Output:
    def __init__(self, emit: Emit = _ignore) -> None:
        self.items: list[dict[str, Any]] = []
        self._emit = emit
        self._open: str | None = None  # "message", "reasoning" or "call:<index>"

    def add(self, delta: Delta) -> None:
        if delta.reasoning:
            self._text("reasoning", delta.reasoning)
        if delta.content:
            self._text("message", delta.content)
        for piece in delta.tool_calls:
            self._call(piece)

    def close(self, status: str = "completed") -> None:
        """End the open item: `status` is "incomplete" when the output was cut short."""
        if self._open is None:
            return
        item, where = self.items[-1], self._where()
        self._open = None
        item["status"] = status
        if item["type"] == "function_call":
            done = {**where, "name": item["name"], "arguments": item["arguments"]}
            self._emit("response.function_call_arguments.done", done)
        else:
            part = item["content"][0]
            text = {**where, "content_index": 0, "text": part["text"]}
            if item["type"] == "message":
                text["logprobs"] = []
            self._emit(_TEXT_EVENTS[item["type"]] + ".done", text)
            self._emit("response.content_part.done", {**where, "content_index": 0, "part": part})
        self._emit(
            "response.output_item.done", {"output_index": where["output_index"], "item": item}
        )

    def _text(self, kind: str, text: str) -> None:
        if self._open != kind:
            self._start(kind, _text_item(kind))
            part: dict[str, Any] = {"type": _PARTS[kind], "text": ""}
            if kind == "message":
                part |= {"annotations": [], "logprobs": []}
            self._emit(
                "response.content_part.added", {**self._where(), "content_index": 0, "part": part}
            )
            self.items[-1]["content"].append(part)
        self.items[-1]["content"][0]["text"] += text
        event = {**self._where(), "content_index": 0, "delta": text}
        if kind == "message":
            event["logprobs"] = []
        self._emit(_TEXT_EVENTS[kind] + ".delta", event)

    def _call(self, piece: ToolCallDelta) -> None:
        kind = f"call:{piece.index}"
        if self._open != kind:
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "call_id": piece.id or new_id("call"),
                "name": piece.name or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._start(kind, item)
        if piece.arguments:
            self.items[-1]["arguments"] += piece.arguments
            event = {**self._where(), "delta": piece.arguments}
            self._emit("response.function_call_arguments.delta", event)

    def _where(self) -> dict[str, Any]:
        """The open item's place, as its events name it."""
        return {"item_id": self.items[-1]["id"], "output_index": len(self.items) - 1}

    def _start(self, kind: str, item: dict[str, Any]) -> None:
        self.close()
        self._open = kind
        self.items.append(item)
        added = {"output_index": len(self.items) - 1, "item": item}
        self._emit("response.output_item.added", added)


def _text_item(kind: str) -> dict[str, Any]:
    if kind == "reasoning":
        return {
            "id": new_id("rs"),
            "type": "reasoning",
            "summary": [],
            "content": [],
            "status": "in_progress",
        }
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
