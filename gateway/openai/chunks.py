"""SSE frames of chat and text completion streams, built without pydantic.

The fields that never change within a completion (id, object, created, model)
are encoded once; each frame splices a delta into them with orjson. A plain
content delta, the hot path, costs one small `orjson.dumps` of its text.
"""

from __future__ import annotations

from typing import Any

import orjson

from engines.base import FinishReason
from gateway.errors import GatewayError
from gateway.openai.logprobs import LogprobFormatter
from gateway.text.streaming import ChoiceStream, Delta
from gateway.text.tool_parsers import ToolCallDelta

DONE = b"data: [DONE]\n\n"
_END = b"\n\n"
_CLOSE = b"}]}" + _END  # the choice, its list and the chunk; no usage
_REASONS = {reason: orjson.dumps(reason.value) for reason in FinishReason}


class _Frames:
    __slots__ = ("_choice_head", "_head", "_heads", "_logprobs", "completion_id")

    def __init__(
        self,
        obj: str,
        completion_id: str,
        created: int,
        model: str,
        logprobs: LogprobFormatter | None,
    ) -> None:
        self.completion_id = completion_id
        fields = {"id": completion_id, "object": obj, "created": created, "model": model}
        self._head = b"data: " + orjson.dumps(fields)[:-1]  # open, to splice the rest into
        self._choice_head = self._head + b',"choices":[{"index":'
        self._heads: dict[int, bytes] = {}  # choice index -> the frame up to its index
        self._logprobs = logprobs

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The last frame before [DONE] when usage is asked for: `choices` is empty."""
        return self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}" + _END

    def error(self, error: GatewayError) -> bytes:
        """A `data:` frame with OpenAI's error body; [DONE] follows."""
        return b"data: " + orjson.dumps(error.body()) + _END

    def end(self) -> bytes:
        return DONE

    def _frame(self, index: int, choice: bytes, usage: dict[str, Any] | None) -> bytes:
        head = self._heads.get(index)
        if head is None:
            head = self._heads[index] = self._choice_head + str(index).encode()
        if usage is None:
            return head + choice + _CLOSE
        return b"".join((head, choice, b'}],"usage":', orjson.dumps(usage), b"}", _END))


class ChatChunks(_Frames):
    """`chat.completion.chunk` frames. With a reasoning parser, every delta names
    `reasoning_content` (null when empty): clients read it as an attribute."""

    __slots__ = ("_no_reasoning", "_reasoning")

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        *,
        logprobs: LogprobFormatter | None = None,
        reasoning: bool = False,
    ) -> None:
        super().__init__("chat.completion.chunk", completion_id, created, model, logprobs)
        self._reasoning = reasoning
        self._no_reasoning = b',"reasoning_content":null' if reasoning else b""

    def role(self, choice: ChoiceStream) -> bytes:
        delta = b'{"role":"assistant","content":""' + self._no_reasoning + b"}"
        return self._frame(
            choice.index, b',"delta":' + delta + b',"logprobs":null,"finish_reason":null', None
        )

    def delta(
        self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None = None
    ) -> bytes:
        if not (delta.reasoning or delta.tool_calls or delta.logprobs or self._reasoning):
            text = b',"delta":{"content":' + orjson.dumps(delta.content)  # the hot path
            return self._frame(
                choice.index, text + b'},"logprobs":null,"finish_reason":null', usage
            )
        body = orjson.dumps(self._delta_fields(delta))
        logprobs = b"null"
        if delta.logprobs and self._logprobs is not None:
            content = self._logprobs.chat(delta.token_ids, delta.logprobs)
            logprobs = orjson.dumps({"content": content})
        return self._frame(
            choice.index,
            b',"delta":' + body + b',"logprobs":' + logprobs + b',"finish_reason":null',
            usage,
        )

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None = None) -> bytes:
        reason = _REASONS[choice.finish_reason or FinishReason.STOP]
        delta = b"{" + self._no_reasoning[1:] + b"}"
        return self._frame(
            choice.index,
            b',"delta":' + delta + b',"logprobs":null,"finish_reason":' + reason,
            usage,
        )

    def _delta_fields(self, delta: Delta) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if delta.content or not delta.tool_calls:
            fields["content"] = delta.content or None
        if self._reasoning:
            fields["reasoning_content"] = delta.reasoning or None
        if delta.tool_calls:
            fields["tool_calls"] = [tool_call_delta(call) for call in delta.tool_calls]
        return fields


def tool_call_delta(call: ToolCallDelta) -> dict[str, Any]:
    """A streamed `tool_calls` entry: id, type and name come with a call's first piece."""
    function: dict[str, Any] = {"arguments": call.arguments}
    entry: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        entry["id"] = call.id
        entry["type"] = "function"
    if call.name is not None:
        function["name"] = call.name
    entry["function"] = function
    return entry


class CompletionChunks(_Frames):
    """`text_completion` frames: the streamed shape of `POST /v1/completions`."""

    __slots__ = ()

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        *,
        logprobs: LogprobFormatter | None = None,
    ) -> None:
        super().__init__("text_completion", completion_id, created, model, logprobs)

    def text(self, choice: ChoiceStream, text: str) -> bytes:
        """Text with no tokens behind it: the echoed prompt."""
        return self._frame(choice.index, self._choice(text, b"null", b"null"), None)

    def delta(
        self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None = None
    ) -> bytes:
        logprobs = b"null"
        if delta.logprobs and self._logprobs is not None:
            logprobs = orjson.dumps(self._columns(choice, delta))
        return self._frame(choice.index, self._choice(delta.content, logprobs, b"null"), usage)

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None = None) -> bytes:
        reason = _REASONS[choice.finish_reason or FinishReason.STOP]
        return self._frame(choice.index, self._choice("", b"null", reason), usage)

    def _columns(self, choice: ChoiceStream, delta: Delta) -> dict[str, list[Any]]:
        assert self._logprobs is not None and delta.logprobs is not None
        columns = self._logprobs.completion(delta.token_ids, delta.logprobs, choice.text_offset)
        if columns["tokens"]:
            choice.text_offset = columns["text_offset"][-1] + len(columns["tokens"][-1])
        return columns

    @staticmethod
    def _choice(text: str, logprobs: bytes, reason: bytes) -> bytes:
        return (
            b',"text":'
            + orjson.dumps(text)
            + b',"logprobs":'
            + logprobs
            + b',"finish_reason":'
            + reason
        )
