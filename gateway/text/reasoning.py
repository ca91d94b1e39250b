"""Reasoning split from content: `<think>...</think>` as the model writes it.

DeepSeek-R1, Qwen3 and their kind think aloud between tags before they answer.
The tags reach neither field, not even in part: text that might begin a tag
("<thi") is held back until the next pieces decide it, as `gateway.text.stops` does
for stop strings.

    >>> splitter = ReasoningSplitter()
    >>> splitter.push("<think>\\nThe user greets me.\\n</th")
    ('The user greets me.', '')
    >>> splitter.push("ink>\\n\\nHello!")
    ('', 'Hello!')

Rules, each so that the result does not depend on how the text was split:

* Text before the start tag is content. Models whose chat template already
  wrote the start tag (DeepSeek-R1, Qwen3 thinking) begin inside the block:
  `starts_in_reasoning=True`; a start tag they write anyway is dropped.
* Only the first block is reasoning. After its end tag everything is content,
  so an answer that talks about `<think>` tags reaches the client whole.
* Without an end tag, everything after the start is reasoning.
* Whitespace that only separates a tag from the text next to it (Qwen3 writes
  `<think>\\n` and `\\n</think>\\n\\n`) is dropped; all other text is kept as
  written, so output without tags comes through unchanged.
"""

from __future__ import annotations

import enum

from gateway.text.holdback import held_back


class _State(enum.Enum):
    BEFORE = enum.auto()  # content, watching for the start tag
    INSIDE = enum.auto()  # reasoning, watching for the end tag
    AFTER = enum.auto()  # content, verbatim to the end


class ReasoningSplitter:
    __slots__ = ("_echo", "_end", "_held", "_start", "_state", "_trim")

    def __init__(
        self, start: str = "<think>", end: str = "</think>", *, starts_in_reasoning: bool = False
    ) -> None:
        if not start or not end:
            raise ValueError("reasoning tags must not be empty")
        self._start, self._end = start, end
        self._state = _State.INSIDE if starts_in_reasoning else _State.BEFORE
        self._held = ""
        # At the start of a block or of the content after it: leading whitespace is dropped.
        self._trim = starts_in_reasoning
        self._echo = starts_in_reasoning  # a start tag may still come, written anyway

    @property
    def thinking(self) -> bool:
        """Inside the reasoning block: its end tag not yet seen."""
        return self._state is _State.INSIDE

    def push(self, text: str) -> tuple[str, str]:
        """(reasoning, content) safe to send now."""
        buffer, self._held = self._held + text, ""
        content = ""
        if self._state is _State.BEFORE:
            before, rest = self._until(buffer, self._start)
            content += before
            if rest is None:
                return "", content
            buffer, self._state, self._trim, self._echo = rest, _State.INSIDE, True, True
        reasoning = ""
        if self._state is _State.INSIDE:
            reasoning, rest = self._reasoning(buffer)
            if rest is None:
                return reasoning, content
            buffer, self._state, self._trim = rest, _State.AFTER, True
        if self._trim:
            buffer = buffer.lstrip()
            self._trim = not buffer
        return reasoning, content + buffer

    def flush(self) -> tuple[str, str]:
        """(reasoning, content) held back, released once generation has ended."""
        held, self._held = self._held, ""
        if self._state is not _State.INSIDE:
            return "", held
        return ("", "") if self._echo and held == self._start else (held, "")

    def _reasoning(self, buffer: str) -> tuple[str, str | None]:
        """Reasoning safe to send, and the text after the end tag if it came."""
        if self._trim:
            buffer = buffer.lstrip()
        if self._echo:
            if self._start.startswith(buffer):  # nothing yet, or maybe the start tag again
                self._held = buffer
                return "", None
            self._echo = False
            if buffer.startswith(self._start):
                buffer = buffer[len(self._start) :].lstrip()
        if self._trim:
            self._trim = not buffer
        return self._until(buffer, self._end)

    def _until(self, buffer: str, tag: str) -> tuple[str, str | None]:
        """Text before `tag` that is safe to send, and the text after it if it came.

        Without the tag, a possible start of it and the whitespace before that
        are held back: both are dropped if the tag completes.
        """
        found = buffer.find(tag)
        if found >= 0:
            return buffer[:found].rstrip(), buffer[found + len(tag) :]
        keep = held_back(buffer, (tag,))
        safe = buffer[: len(buffer) - keep]
        sent = safe.rstrip()
        self._held = buffer[len(sent) :]
        return sent, None
