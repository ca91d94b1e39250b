"""Non-streamed responses' choices: each choice's deltas gathered (`Run.collect`), then
its entry in the JSON body.

The deltas are the very ones a stream would send, so a collected completion
says exactly what the stream would have said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.base import TokenLogprob
from gateway.openai.logprobs import LogprobFormatter
from gateway.text.streaming import ChoiceStream, Delta


@dataclass(slots=True)
class Collected:
    """One choice's output so far."""

    choice: ChoiceStream
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  # the tokens `logprobs` are of
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, delta: Delta) -> None:
        self.content.append(delta.content)
        self.reasoning.append(delta.reasoning)
        if delta.logprobs:
            self.token_ids += delta.token_ids
            self.logprobs += delta.logprobs
        for piece in delta.tool_calls:
            if piece.index == len(self.calls):
                self.calls.append(
                    {
                        "id": piece.id or "",
                        "type": "function",
                        "function": {"name": "", "arguments": ""},
                    }
                )
            function = self.calls[piece.index]["function"]
            if piece.name is not None:
                function["name"] = piece.name
            function["arguments"] += piece.arguments


def chat_choice(
    out: Collected, *, logprobs: LogprobFormatter | None, reasoning: bool
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(out.content) or (None if out.calls else ""),
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(out.reasoning) or None
    if out.calls:
        message["tool_calls"] = out.calls
    return {
        "index": out.choice.index,
        "message": message,
        "logprobs": None
        if logprobs is None
        else {"content": logprobs.chat(out.token_ids, out.logprobs)},
        "finish_reason": out.choice.finish_reason,
    }


def completion_choice(
    out: Collected, *, echo: str, logprobs: LogprobFormatter | None
) -> dict[str, Any]:
    return {
        "index": out.choice.index,
        "text": echo + "".join(out.content),
        "logprobs": None
        if logprobs is None
        else logprobs.completion(out.token_ids, out.logprobs, offset=0),
        "finish_reason": out.choice.finish_reason,
    }
