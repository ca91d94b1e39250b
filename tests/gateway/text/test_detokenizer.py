from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from gateway.text.detokenizer import IncrementalDetokenizer

SAMPLES = [
    "Plain English, with punctuation!",
    "Emoji: 😀👍🏽 and a family 👨‍👩‍👧 in one line",
    "中文测试：你好，世界。日本語のテキストも。",
    "Mixed: naïve café — ĳ ÿ 한국어 текст",
]


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.mark.parametrize("text", SAMPLES)
def test_one_token_at_a_time_never_splits_a_character(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_token_ids=[1, 9690])
    pieces = [detokenizer.push([token_id]) for token_id in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_byte_fallback_pieces_wait_for_the_whole_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("😀", add_special_tokens=False).ids
    assert len(ids) > 1  # byte-level: the emoji takes several tokens
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_token_ids=[])
    assert [detokenizer.push([i]) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detokenizer.push(ids[-1:]) == "😀"


def test_several_tokens_at_once_equal_one_by_one(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(SAMPLES[1], add_special_tokens=False).ids
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_token_ids=[])
    assert detokenizer.push(ids[:5]) + detokenizer.push(ids[5:]) == SAMPLES[1]


def test_special_tokens_are_not_shown(tokenizer: Tokenizer) -> None:
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_token_ids=[])
    hello = tokenizer.encode("Hello", add_special_tokens=False).ids
    eos = tokenizer.token_to_id("<|im_end|>")
    assert eos is not None
    assert detokenizer.push([*hello, eos]) == "Hello"


def test_special_tokens_are_dropped_unless_kept(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("<|im_start|>hi", add_special_tokens=False).ids
    assert IncrementalDetokenizer(tokenizer, []).push(ids) == "hi"
    kept = IncrementalDetokenizer(tokenizer, [], skip_special=False)
    assert kept.push(ids) == "<|im_start|>hi"
