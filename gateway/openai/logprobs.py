"""Engine logprobs in OpenAI's two shapes: chat's `content` list and completions' columns.

Each token is shown alone, as its own text: a token that holds part of a UTF-8
character shows as U+FFFD, and its `bytes` are those of that text (as vLLM).
A logprob of -inf (a token a grammar or bias ruled out) is sent as -9999.0,
because JSON has no infinity and clients parse a float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from engines.base import TokenLogprob

_FLOOR = -9999.0


def _finite(logprob: float) -> float:
    return logprob if logprob > _FLOOR else _FLOOR


class LogprobFormatter:
    __slots__ = ("_text",)

    def __init__(self, token_text: Callable[[int], str]) -> None:
        self._text = token_text

    def chat(self, token_ids: Sequence[int], logprobs: Sequence[TokenLogprob]) -> list[Any]:
        """Entries of a chat choice's `logprobs.content`, one per token."""
        return [
            {
                **self._entry(token, entry.logprob),
                "top_logprobs": [self._entry(alt, lp) for alt, lp in entry.top],
            }
            for token, entry in zip(token_ids, logprobs, strict=True)
        ]

    def completion(
        self, token_ids: Sequence[int], logprobs: Sequence[TokenLogprob], offset: int
    ) -> dict[str, list[Any]]:
        """A text completion choice's `logprobs` columns; `offset`: the text before these."""
        tokens, offsets = [], []
        for token in token_ids:
            text = self._text(token)
            tokens.append(text)
            offsets.append(offset)
            offset += len(text)
        return {
            "tokens": tokens,
            "token_logprobs": [_finite(entry.logprob) for entry in logprobs],
            "top_logprobs": [
                {self._text(alt): _finite(lp) for alt, lp in entry.top} for entry in logprobs
            ],
            "text_offset": offsets,
        }

    def _entry(self, token: int, logprob: float) -> dict[str, Any]:
        text = self._text(token)
        return {"token": text, "logprob": _finite(logprob), "bytes": list(text.encode())}
