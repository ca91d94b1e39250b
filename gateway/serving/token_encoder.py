"""Text to token ids with the Rust tokenizer, remembering the text between added tokens.

Most of a chat prompt has been tokenized before: the system prompt and the tool
definitions come with every request, and a multi-turn conversation sends every
earlier turn again. The tokenizer itself first cuts the text at its added tokens
(`<|im_start|>`, `<|im_end|>`, ...) and tokenizes each piece in between on its
own, so those pieces' ids, remembered or encoded now, concatenate to exactly
the ids of the whole text.

That holds when nothing else depends on where a piece sits in the text. The
cache is used only when it does: no pre-tokenizer that treats the start of the
text apart (SentencePiece's `Metaspace`, whose "first" scheme prepends to the
first piece alone), no added token that swallows the spaces around it or must
stand as a whole word, no truncation or padding configured, added tokens split
as usual. Any other tokenizer encodes the whole text every time.
"""

from __future__ import annotations

import json
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from tokenizers import Tokenizer

CACHED_CHARS = 4_000_000  # the pieces' text, all together: 7 MB with their ids for English


class TokenEncoder:
    """Thread-safe: prompts are encoded on the event loop and in a thread pool."""

    def __init__(self, tokenizer: Tokenizer, cached_chars: int = CACHED_CHARS) -> None:
        self._tokenizer = tokenizer
        self._splitter = _added_token_splitter(tokenizer)
        self._added = {token.content: id_ for id_, token in _added_tokens(tokenizer)}
        self._pieces: OrderedDict[str, array[int]] = OrderedDict()  # 4 bytes an id
        self._cached_chars = 0
        self._budget = cached_chars
        self._lock = threading.Lock()

    @property
    def caches(self) -> bool:
        """Whether this tokenizer's pieces are remembered (see the module's docstring)."""
        return self._splitter is not None

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        if add_special_tokens or self._splitter is None:
            return self._encode([text], add_special_tokens)[0]
        pieces = self._splitter.split(text)  # text, added token, text, ..., text
        texts = pieces[0::2]
        found = self._lookup(texts)
        missing = [piece for piece in dict.fromkeys(texts) if piece not in found]
        if missing:
            encoded = dict(zip(missing, self._encode(missing, False), strict=True))
            self._remember(encoded)
            found |= encoded
        ids: list[int] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                ids.append(self._added[piece])
            else:
                ids += found[piece]
        return ids

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        # No offsets: the same ids for less work than `encode`, and the GIL released.
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=add_special_tokens)
        return [encoding.ids for encoding in encodings]

    def _lookup(self, pieces: list[str]) -> dict[str, Sequence[int]]:
        found: dict[str, Sequence[int]] = {"": ()}  # between two adjacent tokens, or at an end
        with self._lock:
            for piece in pieces:
                ids = self._pieces.get(piece)
                if ids is not None:
                    self._pieces.move_to_end(piece)
                    found[piece] = ids
        return found

    def _remember(self, encoded: dict[str, list[int]]) -> None:
        with self._lock:
            for piece, ids in encoded.items():
                if len(piece) > self._budget or piece in self._pieces:
                    continue
                self._pieces[piece] = array("i", ids)
                self._cached_chars += len(piece)
            while self._cached_chars > self._budget:
                oldest, _ = self._pieces.popitem(last=False)
                self._cached_chars -= len(oldest)


def _added_tokens(tokenizer: Tokenizer) -> Iterator[tuple[int, Any]]:
    """The added tokens the tokenizer cuts the text at before normalizing it."""
    for id_, token in tokenizer.get_added_tokens_decoder().items():
        if not token.normalized:
            yield id_, token


def _added_token_splitter(tokenizer: Tokenizer) -> re.Pattern[str] | None:
    """A pattern that cuts text where the tokenizer does, or None where pieces are not
    independent. A capturing group keeps the tokens in `split`'s result; longest first,
    as the tokenizer prefers the longest token that starts where several do."""
    config = json.loads(tokenizer.to_str())
    if tokenizer.encode_special_tokens or config.get("truncation") or config.get("padding"):
        return None
    if "Metaspace" in json.dumps(config.get("pre_tokenizer")):
        return None
    tokens = [token for _, token in _added_tokens(tokenizer)]
    if not tokens or any(t.lstrip or t.rstrip or t.single_word for t in tokens):
        return None
    contents = sorted({token.content for token in tokens}, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, contents)) + ")")
