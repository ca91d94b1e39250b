"""llama-index's `OpenAILike` LLM: chat models over /v1/chat/completions, others over
/v1/completions.

Offline: OpenAILike counts tokens only with the `tokenizer` it is given (none
here: `max_tokens` is set, so nothing needs counting), and llama-index's global
tokenizer, which other components use, defaults to tiktoken's cl100k_base from
files bundled with llama-index-core. The fixture sets it to the served model's
own tokenizer instead, which is both offline and right for this model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_index.core
import pytest
from llama_index.core import Settings
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.llms.openai_like import OpenAILike
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from transformers import AutoTokenizer

from tests.clients.common import MODEL
from tests.conftest import LiveServer

MESSAGES = [ChatMessage(role=MessageRole.USER, content="Say hello.")]


@pytest.fixture(scope="module", autouse=True)
def model_tokenizer(model_dir: Path) -> Iterator[None]:
    """llama-index's global tokenizer: the model's, from its local files."""
    previous = llama_index.core.global_tokenizer  # None: tiktoken's, made on first use
    Settings.tokenizer = AutoTokenizer.from_pretrained(model_dir)
    yield
    llama_index.core.global_tokenizer = previous


def llm(server: LiveServer, max_tokens: int = 5, **kwargs: Any) -> OpenAILike:
    return OpenAILike(
        model=MODEL,
        api_base=f"{server.url}/v1",
        api_key="x",
        context_window=512,
        max_tokens=max_tokens,
        max_retries=0,
        timeout=60,
        **kwargs,
    )


def test_global_tokenizer_is_the_models(model_dir: Path) -> None:
    ids = Settings.tokenizer("Say hello.")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert ids == tokenizer.encode("Say hello.", add_special_tokens=False)


def test_complete_with_a_chat_model(synthetic_gateway: LiveServer) -> None:
    response = llm(synthetic_gateway, is_chat_model=True).complete("Say hello.")
    assert response.text
    assert isinstance(response.raw, ChatCompletion)
    assert response.raw.choices[0].finish_reason == "length"
    assert response.additional_kwargs["completion_tokens"] == 5


def test_chat(synthetic_gateway: LiveServer) -> None:
    response = llm(synthetic_gateway, is_chat_model=True).chat(MESSAGES)
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content
    assert isinstance(response.raw, ChatCompletion)
    assert response.raw.model == MODEL
    assert response.additional_kwargs["completion_tokens"] == 5


def test_stream_chat(synthetic_gateway: LiveServer) -> None:
    model = llm(synthetic_gateway, is_chat_model=True)
    whole = model.chat(MESSAGES).message.content
    responses = list(model.stream_chat(MESSAGES))
    assert len(responses) > 2
    assert all(isinstance(r.raw, ChatCompletionChunk) for r in responses)
    assert "".join(r.delta or "" for r in responses) == whole
    assert responses[-1].message.content == whole


def test_complete_with_a_completion_model(synthetic_gateway: LiveServer) -> None:
    """is_chat_model=False: the prompt goes to /v1/completions as it is, no chat template."""
    model = llm(synthetic_gateway, is_chat_model=False)
    response = model.complete("Once upon a time")
    assert response.text
    assert isinstance(response.raw, Completion)
    assert response.raw.object == "text_completion"
    assert response.additional_kwargs["completion_tokens"] == 5
    streamed = list(model.stream_complete("Once upon a time"))
    assert streamed[-1].text == response.text
    assert all(isinstance(r.raw, Completion) for r in streamed)


def test_chat_with_a_completion_model(synthetic_gateway: LiveServer) -> None:
    """llama-index renders the messages into one prompt itself, then completes it."""
    response = llm(synthetic_gateway, is_chat_model=False).chat(MESSAGES)
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content
    assert isinstance(response.raw, Completion)


@pytest.mark.model
def test_chat_with_the_model(transformers_gateway: LiveServer) -> None:
    model = llm(transformers_gateway, is_chat_model=True, temperature=0, max_tokens=32)
    question = [ChatMessage(role=MessageRole.USER, content="What is the capital of France?")]
    assert "Paris" in (model.chat(question).message.content or "")
    streamed = "".join(r.delta or "" for r in model.stream_chat(question))
    assert "Paris" in streamed
