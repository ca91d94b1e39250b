"""The embedded SmolLM2 through the OpenAI SDK: real weights, real answers."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.model

QUESTION: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


def sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_greedy_answer_names_paris(transformers_gateway: LiveServer) -> None:
    completion = sdk(transformers_gateway).chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=QUESTION, temperature=0, max_tokens=32
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"  # EOS, before max_tokens


async def test_streamed_answer_names_paris_with_the_async_client(
    transformers_gateway: LiveServer,
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{transformers_gateway.url}/v1", api_key="unused", max_retries=0
    )
    stream = await client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=QUESTION,
        temperature=0,
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        else:
            usage = chunk.usage
    await client.close()
    assert "Paris" in text
    assert usage is not None
    assert usage.completion_tokens > 3
