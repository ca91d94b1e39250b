"""Routes beyond completions: /tokenize and /detokenize, with the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
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


def test_a_model_is_retrieved_by_its_id_and_an_unknown_one_is_404(
    synthetic_gateway: LiveServer,
) -> None:
    sdk = openai.OpenAI(base_url=f"{synthetic_gateway.url}/v1", api_key="x", max_retries=0)
    model = sdk.models.retrieve(MODEL)
    assert (model.id, model.object, model.owned_by) == (MODEL, "model", "trtllm-gateway")
    assert [m.id for m in sdk.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        sdk.models.retrieve("org/other-model")


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/v1/models"])
def test_probes_and_scrapers_may_send_head(synthetic_gateway: LiveServer, path: str) -> None:
    got = httpx.get(synthetic_gateway.url + path)
    head = httpx.head(synthetic_gateway.url + path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**30])
def test_a_seed_outside_64_bits_is_a_400_naming_it(
    synthetic_gateway: LiveServer, seed: int
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": seed}
    response = httpx.post(f"{synthetic_gateway.url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"


def test_the_largest_seed_still_gives_every_choice_its_own(synthetic_gateway: LiveServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 2**63 - 1,
        "n": 3,
        "max_tokens": 2,
    }
    response = httpx.post(f"{synthetic_gateway.url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert len(response.json()["choices"]) == 3
