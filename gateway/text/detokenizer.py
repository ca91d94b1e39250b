"""Incremental detokenization: O(1) per token, never a split UTF-8 character.

`tokenizers.decoders.DecodeStream` returns None until a token completes a
character (byte-fallback pieces of an emoji, say), so U+FFFD never reaches a
client. It is primed with the last prompt tokens so that decoders which strip a
leading space at the start of a sequence (SentencePiece's metaspace) treat the
first output token as a continuation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

log = logging.getLogger(__name__)

_PRIME_TOKENS = 4


class IncrementalDetokenizer:
    __slots__ = ("_recent", "_skip_special", "_stream", "_tokenizer")

    def __init__(
        self, tokenizer: Tokenizer, prompt_token_ids: Sequence[int], *, skip_special: bool = True
    ) -> None:
        """`skip_special=False` keeps special tokens as text: Mistral's `[TOOL_CALLS]` is one."""
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._recent = list(prompt_token_ids[-_PRIME_TOKENS:])
        self._stream = DecodeStream(ids=self._recent, skip_special_tokens=skip_special)

    def push(self, token_ids: Sequence[int]) -> str:
        """The text that `token_ids` complete; "" while a character is still partial."""
        if len(token_ids) == 1:  # the common case: one token per engine step
            return self._step(token_ids[0]) or ""
        return "".join(filter(None, map(self._step, token_ids)))

    def _step(self, token_id: int) -> str | None:
        try:
            piece = self._stream.step(self._tokenizer, token_id)
        except Exception:
            # An id sequence the decoder cannot extend (tokenizers raises "invalid
            # prefix"): start a fresh stream instead of failing the request.
            log.warning("detokenizer reset at token id %d", token_id, exc_info=True)
            self._stream = DecodeStream(skip_special_tokens=self._skip_special)
            piece = self._stream.step(self._tokenizer, token_id)
        return piece
