"""Non-streamed responses: each choice's deltas gathered, then one JSON body.

The deltas are the very ones a stream would send, so a collected completion
says exactly what the stream would have said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.chunks import CompletionChunks
from gateway.logprobs import LogprobFormatter
from gateway.runs import Run
from gateway.streaming import ChoiceStream, Delta


@dataclass(slots=True)
class Collected:
    """One choice's output so far."""

    choice: ChoiceStream
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)  # chat entries, or completion columns

    def add_calls(self, delta: Delta) -> None:
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


async def collect(
    run: Run, chunks: CompletionChunks | None, logprobs: LogprobFormatter | None
) -> list[Collected]:
    """Every choice's output, in index order. `chunks`: a text completion's (for its
    logprob columns); None for chat."""
    collected = {id(g): Collected(g.choice) for g in run.generations}
    async for generation, delta in run.events():
        if delta is None:
            continue
        out = collected[id(generation)]
        out.content.append(delta.content)
        out.reasoning.append(delta.reasoning)
        out.add_calls(delta)
        if delta.logprobs and logprobs is not None:
            if chunks is not None:
                out.logprobs.append(chunks.logprob_columns(out.choice, delta))
            else:
                out.logprobs += logprobs.chat(delta.token_ids, delta.logprobs)
    return sorted(collected.values(), key=lambda out: out.choice.index)


def chat_choice(out: Collected, *, logprobs: bool, reasoning: bool) -> dict[str, Any]:
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
        "logprobs": {"content": out.logprobs} if logprobs else None,
        "finish_reason": out.choice.finish_reason,
    }


def completion_choice(out: Collected, *, echo: str, logprobs: bool) -> dict[str, Any]:
    columns: dict[str, list[Any]] | None = None
    if logprobs:
        columns = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for part in out.logprobs:
            for name, values in part.items():
                columns[name] += values
    return {
        "index": out.choice.index,
        "text": echo + "".join(out.content),
        "logprobs": columns,
        "finish_reason": out.choice.finish_reason,
    }
