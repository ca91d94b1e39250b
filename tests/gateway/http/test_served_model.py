"""The served model as clients see it: several names (aliases), each accepted by every
completion route and echoed back, and a context capped by `max_model_len`."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

NAMES = ["primary", "org/alias"]
MAX_MODEL_LEN = 64  # the engine allows 512
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CLAUDE_HI: list[MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = Settings(
        engine="synthetic",
        synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=512),
        served_model_name=NAMES,
        max_model_len=MAX_MODEL_LEN,
    )
    yield from serve(settings)


@pytest.fixture
def sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def test_every_name_is_listed_and_retrievable_with_the_capped_context(
    sdk: openai.OpenAI,
) -> None:
    listed = sdk.models.list().data
    assert [(m.id, (m.model_extra or {})["max_model_len"]) for m in listed] == [
        ("primary", 64),
        ("org/alias", 64),
    ]
    for name in NAMES:
        assert sdk.models.retrieve(name).id == name
    with pytest.raises(openai.NotFoundError, match="The model `SmolLM2-135M-Instruct` does not"):
        sdk.models.retrieve("SmolLM2-135M-Instruct")  # the default name is no longer served


@pytest.mark.parametrize("name", NAMES)
def test_every_completion_route_takes_every_name_and_echoes_it(
    server: LiveServer, sdk: openai.OpenAI, name: str
) -> None:
    chat = sdk.chat.completions.create(model=name, messages=HI, max_tokens=2)
    assert chat.model == name
    stream = sdk.chat.completions.create(model=name, messages=HI, max_tokens=2, stream=True)
    assert {chunk.model for chunk in stream} == {name}
    assert sdk.completions.create(model=name, prompt="hi", max_tokens=2).model == name
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as claude:
        message = claude.messages.create(model=name, messages=CLAUDE_HI, max_tokens=2)
    assert message.model == name


def test_an_unknown_name_is_a_404_in_each_routes_shape(server: LiveServer) -> None:
    chat = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "other", "messages": HI})
    assert (chat.status_code, chat.json()["error"]["code"]) == (404, "model_not_found")
    text = httpx.post(f"{server.url}/v1/completions", json={"model": "other", "prompt": "hi"})
    assert (text.status_code, text.json()["error"]["param"]) == (404, "model")
    messages = httpx.post(
        f"{server.url}/v1/messages", json={"model": "other", "messages": HI, "max_tokens": 2}
    )
    assert messages.status_code == 404
    assert messages.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model `other` does not exist."},
    }


def test_metrics_name_the_model_by_its_first_name(server: LiveServer, sdk: openai.OpenAI) -> None:
    before = server.scrape()
    sdk.chat.completions.create(model="org/alias", messages=HI, max_tokens=1)
    growth = server.scrape().growth(before, "gateway_request_success_total", model_name="primary")
    assert growth == 1


def test_a_request_without_max_tokens_fills_the_capped_context(sdk: openai.OpenAI) -> None:
    chat = sdk.chat.completions.create(model="primary", messages=HI)
    assert chat.usage is not None
    assert chat.usage.total_tokens == MAX_MODEL_LEN
    assert chat.choices[0].finish_reason == "length"


def test_a_prompt_past_the_capped_context_is_refused(server: LiveServer) -> None:
    body = {"model": "primary", "prompt": list(range(1, MAX_MODEL_LEN + 1))}
    response = httpx.post(f"{server.url}/v1/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "This model's maximum context length is 64 tokens. However, your prompt contains 64 "
        "input tokens, which exceeds this limit even without any output tokens. Please reduce "
        "the length of the input prompt."
    )
    tokenized = httpx.post(f"{server.url}/tokenize", json={"model": "org/alias", "prompt": "hi"})
    assert tokenized.json()["max_model_len"] == MAX_MODEL_LEN
