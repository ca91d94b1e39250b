"""Per-choice stream state, and SSE chunk bytes built without pydantic.

`ChoiceStream` turns token ids into the text a client may see: detokenized,
stop strings held back and cut. Streaming and non-streaming responses both
read it, so their content is the same by construction.

`ChunkEncoder` pre-encodes the fields that never change within a completion
(id, created, model) once, and splices each delta into them with orjson: the
per-token cost is one small `orjson.dumps` of the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engines.base import FinishReason
from gateway.detokenizer import IncrementalDetokenizer
from gateway.stops import StopMatcher

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class ChoiceStream:
    index: int
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher | None = None
    tokens: int = 0  # token ids received from the engine
    finish_reason: str | None = None  # set once: by a stop string or by `finish`

    def push(self, token_ids: Sequence[int]) -> str:
        """Text to send for these new tokens; sets `finish_reason` on a stop string."""
        self.tokens += len(token_ids)
        text = self.detokenizer.push(token_ids)
        if self.stops is None or not text:
            return text
        text, stopped = self.stops.push(text)
        if stopped:
            self.finish_reason = "stop"
        return text

    def finish(self, reason: FinishReason) -> str:
        """The engine finished the choice: the held-back text, now safe to send."""
        self.finish_reason = "length" if reason is FinishReason.LENGTH else "stop"
        return self.stops.flush() if self.stops is not None else ""


class ChunkEncoder:
    """`data: {...}\\n\\n` frames of one chat completion stream."""

    __slots__ = ("_choice_head", "_head")

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        fields = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._head = b"data: " + orjson.dumps(fields)[:-1]  # open, to splice the rest into
        self._choice_head = self._head + b',"choices":[{"index":'

    def role(self, index: int) -> bytes:
        return self._choice(index, b'{"role":"assistant","content":""}', b"null")

    def content(self, index: int, text: str) -> bytes:
        return self._choice(index, b'{"content":' + orjson.dumps(text) + b"}", b"null")

    def finish(self, index: int, reason: str) -> bytes:
        return self._choice(index, b"{}", orjson.dumps(reason))

    def usage(self, usage: dict[str, Any]) -> bytes:
        return self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"

    def _choice(self, index: int, delta: bytes, finish_reason: bytes) -> bytes:
        return b"".join(
            (
                self._choice_head,
                str(index).encode(),
                b',"delta":',
                delta,
                b',"logprobs":null,"finish_reason":',
                finish_reason,
                b"}]}\n\n",
            )
        )
