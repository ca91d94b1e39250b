"""Per-choice stream state: token ids in, what the client may see out.

`ChoiceStream.push` runs one choice's text through its stages, each one
holding back what the next pieces may still change:

    token ids -> detokenizer -> stop strings -> reasoning split -> tool-call parser

and returns a `Delta`: content, reasoning, tool-call pieces and the tokens'
logprobs. Streaming and non-streaming responses both read it, so their content
is the same by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engines.base import FinishReason, TokenLogprob
from gateway.text.detokenizer import IncrementalDetokenizer
from gateway.text.reasoning import ReasoningSplitter
from gateway.text.stops import StopMatcher
from gateway.text.tool_parsers import ToolCallDelta, ToolCallParser


@dataclass(slots=True)
class Delta:
    """What one choice adds to its output in one step."""

    content: str = ""
    reasoning: str = ""
    tool_calls: Sequence[ToolCallDelta] = ()
    token_ids: Sequence[int] = ()  # the tokens these logprobs are of
    logprobs: Sequence[TokenLogprob] | None = None

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls or self.logprobs)


@dataclass(slots=True)
class ChoiceStream:
    index: int
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher | None = None
    reasoning: ReasoningSplitter | None = None
    tools: ToolCallParser | None = None
    tokens: int = 0  # token ids received from the engine
    # Of those, the reasoning block's: from the token that completes its start tag
    # through the one that completes its end tag.
    reasoning_tokens: int = 0
    text_offset: int = 0  # text-completion logprobs: where the next token's text starts
    finish_reason: FinishReason | None = None  # set once: by a stop string or by `finish`

    def push(
        self, token_ids: Sequence[int], logprobs: Sequence[TokenLogprob] | None = None
    ) -> Delta:
        """What these new tokens add; sets `finish_reason` on a stop string."""
        self.tokens += len(token_ids)
        text = self.detokenizer.push(token_ids)
        stopped = False
        if self.stops is not None and text:
            text, stopped = self.stops.push(text)
        thinking = self.reasoning is not None and self.reasoning.thinking
        delta = self._split(text, final=stopped)
        if thinking or (self.reasoning is not None and self.reasoning.thinking):
            self.reasoning_tokens += len(token_ids)
        if stopped:
            self.finish_reason = self._reason(FinishReason.STOP)
        if logprobs:
            delta.token_ids, delta.logprobs = token_ids, logprobs
        return delta

    def finish(self, reason: FinishReason) -> Delta:
        """The engine finished the choice: the held-back text, now safe to send."""
        text = self.stops.flush() if self.stops is not None else ""
        delta = self._split(text, final=True)
        self.finish_reason = self._reason(reason)
        return delta

    def _split(self, text: str, *, final: bool) -> Delta:
        if self.reasoning is None and self.tools is None:
            return Delta(text)
        reasoning = ""
        if self.reasoning is not None:
            reasoning, text = self.reasoning.push(text)
            if final:
                more_reasoning, more_text = self.reasoning.flush()
                reasoning, text = reasoning + more_reasoning, text + more_text
        calls: list[ToolCallDelta] = []
        if self.tools is not None:
            text, calls = self.tools.push(text)
            if final:
                more_text, more_calls = self.tools.flush()
                text, calls = text + more_text, calls + more_calls
        return Delta(text, reasoning, calls)

    def _reason(self, reason: FinishReason) -> FinishReason:
        if reason is FinishReason.LENGTH:
            return reason
        called = self.tools is not None and self.tools.calls
        return FinishReason.TOOL_CALLS if called else FinishReason.STOP
