"""Routes beyond completions: /tokenize and /detokenize, with the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import httpx
from tokenizers import Tokenizer

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"


def test_tokenize_a_prompt_then_detokenize_it_back(
    synthetic_gateway: LiveServer, model_dir: Path
) -> None:
    url = synthetic_gateway.url
    tokens = httpx.post(f"{url}/tokenize", json={"model": MODEL, "prompt": "Hello world"}).json()
    expected = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(
        "Hello world", add_special_tokens=False
    )
    assert tokens["tokens"] == expected.ids
    assert tokens["count"] == len(expected.ids) and tokens["max_model_len"] == 512
    text = httpx.post(f"{url}/detokenize", json={"model": MODEL, "tokens": tokens["tokens"]})
    assert text.json() == {"prompt": "Hello world"}


def test_tokenize_messages_counts_what_a_chat_completion_counts(
    synthetic_gateway: LiveServer,
) -> None:
    url = synthetic_gateway.url
    messages = [{"role": "user", "content": "Hi there"}]
    tokens = httpx.post(f"{url}/tokenize", json={"messages": messages}).json()
    chat = httpx.post(
        f"{url}/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 1}
    ).json()
    assert tokens["count"] == chat["usage"]["prompt_tokens"]


def test_bad_tokenize_and_detokenize_requests_are_400s(synthetic_gateway: LiveServer) -> None:
    url = synthetic_gateway.url
    both = httpx.post(f"{url}/tokenize", json={"prompt": "a", "messages": []})
    neither = httpx.post(f"{url}/tokenize", json={})
    outside = httpx.post(f"{url}/detokenize", json={"tokens": [10**6]})
    negative = httpx.post(f"{url}/detokenize", json={"tokens": [-1]})
    assert [r.status_code for r in (both, neither, outside, negative)] == [400] * 4
    assert outside.json()["error"]["param"] == "tokens"
    other_model = httpx.post(f"{url}/tokenize", json={"model": "gpt-4", "prompt": "a"})
    assert other_model.status_code == 404
