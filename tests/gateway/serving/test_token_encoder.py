"""gateway/serving/token_encoder.py against the Rust tokenizer itself: the same ids, cached or not.

The tokenizers are SmolLM2's with the pre-tokenizers, normalizers and added tokens of
the families the gateway serves, and some that must keep the cache off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Regex, Tokenizer, normalizers
from tokenizers import pre_tokenizers as pt
from tokenizers.processors import TemplateProcessing

from gateway.serving.token_encoder import TokenEncoder

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eot_id|>x"]
PLAIN = ["<tool_call>", "</tool_call>"]


def smollm2(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def llama3_like(model_dir: Path) -> Tokenizer:
    tokenizer = smollm2(model_dir)
    tokenizer.pre_tokenizer = pt.Sequence(
        [pt.Split(Regex(LLAMA3_SPLIT), "isolated"), pt.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.add_special_tokens([AddedToken(t, normalized=False) for t in SPECIAL])
    return tokenizer


_llama3_like = functools.cache(llama3_like)


def qwen_like(model_dir: Path) -> Tokenizer:
    """NFC, added tokens that are not special, and one matched after normalizing."""
    tokenizer = smollm2(model_dir)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN])
    tokenizer.add_tokens([AddedToken("ab c", normalized=True)])
    return tokenizer


def metaspace(model_dir: Path) -> Tokenizer:
    """SentencePiece's pre-tokenizer prepends to the first piece alone: not cacheable."""
    tokenizer = smollm2(model_dir)
    tokenizer.pre_tokenizer = pt.Metaspace(prepend_scheme="first")
    return tokenizer


def lstrip(model_dir: Path) -> Tokenizer:
    tokenizer = smollm2(model_dir)
    tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    return tokenizer


def truncating(model_dir: Path) -> Tokenizer:
    tokenizer = smollm2(model_dir)
    tokenizer.enable_truncation(8)
    return tokenizer


CACHEABLE: list[Callable[[Path], Tokenizer]] = [smollm2, llama3_like, qwen_like]
NOT_CACHEABLE: list[Callable[[Path], Tokenizer]] = [metaspace, lstrip, truncating]

# Text made to find the seams: every added token, parts of them, spaces and newlines
# on either side, characters the normalizers change, digits and emoji.
PIECES = [
    *SPECIAL, *PLAIN, "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<mask>", "ab c",
    "<|im_", "end|>", "<", "|", " ", "  ", "\n", "\n\n", "\t", "user", "assistant",
    "Hello", " world", "e\u0301", "\u00e9", "\ufb01", "2026", "\U0001f600", "\u6771\u4eac", "x",
]  # fmt: skip
TEXTS = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)


class Counting:
    """A tokenizer that counts its encode calls."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.calls = 0

    def encode_batch_fast(self, texts: list[str], **kwargs: Any) -> Any:
        self.calls += 1
        return self._tokenizer.encode_batch_fast(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def expected(tokenizer: Tokenizer, text: str) -> list[int]:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return ids


@pytest.mark.parametrize("make", CACHEABLE + NOT_CACHEABLE)
def test_the_cache_is_on_exactly_where_pieces_are_independent(
    make: Callable[[Path], Tokenizer], model_dir: Path
) -> None:
    assert TokenEncoder(make(model_dir)).caches == (make in CACHEABLE)


@pytest.mark.parametrize("make", CACHEABLE + NOT_CACHEABLE)
def test_the_same_ids_as_the_tokenizer_first_and_again(
    make: Callable[[Path], Tokenizer], model_dir: Path
) -> None:
    tokenizer = make(model_dir)
    encoder = TokenEncoder(tokenizer)
    chat = (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi <tool_call>"
        "<|eot_id|>x<|eot_id|> ab c \u00e9<|im_end|>\n<|im_start|>assistant\n"
    )

    @settings(max_examples=150, derandomize=True, deadline=None)
    @given(TEXTS)
    def same(text: str) -> None:
        assert encoder.encode(text) == expected(tokenizer, text)
        assert encoder.encode(text) == expected(tokenizer, text)  # now from the cache

    same()
    for text in ["", chat, chat * 3, "<|im_start|><|im_end|>", " <|im_end|> "]:
        assert encoder.encode(text) == expected(tokenizer, text)


@settings(max_examples=50, derandomize=True, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=8))
def test_an_evicting_cache_still_gives_the_tokenizers_ids(
    texts: list[str], model_dir: Path
) -> None:
    tokenizer = _llama3_like(model_dir)  # shared: the encoder never changes it
    encoder = TokenEncoder(tokenizer, cached_chars=12)
    for text in texts + texts[::-1]:
        assert encoder.encode(text) == expected(tokenizer, text)


def test_text_seen_before_is_not_tokenized_again(model_dir: Path) -> None:
    counting = Counting(smollm2(model_dir))
    encoder = TokenEncoder(counting)  # type: ignore[arg-type]
    system = "<|im_start|>system\nA long system prompt, sent every time.<|im_end|>\n"
    first = encoder.encode(system + "<|im_start|>user\nOne<|im_end|>\n")
    assert counting.calls == 1  # every missing piece in one call
    second = encoder.encode(system + "<|im_start|>user\nTwo<|im_end|>\n")
    assert counting.calls == 2  # for "user\nTwo" alone
    assert second[: len(first) - 4] == first[: len(first) - 4]
    encoder.encode(system + "<|im_start|>user\nOne<|im_end|>\n")
    assert counting.calls == 2


def test_special_tokens_added_on_request_skip_the_cache(model_dir: Path) -> None:
    counting = Counting(smollm2(model_dir))
    encoder = TokenEncoder(counting)  # type: ignore[arg-type]
    for _ in range(2):
        assert encoder.encode("Hi", add_special_tokens=True) == expected(smollm2(model_dir), "Hi")
    assert counting.calls == 2


def test_special_tokens_added_on_request(model_dir: Path) -> None:
    tokenizer = smollm2(model_dir)
    tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
    )
    encoder = TokenEncoder(tokenizer)
    ids = tokenizer.encode("Hi there", add_special_tokens=True).ids
    assert ids[0] == 1
    assert encoder.encode("Hi there", add_special_tokens=True) == ids
    assert encoder.encode("Hi there") == ids[1:]
