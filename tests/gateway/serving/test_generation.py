"""Usage as clients read it, over a live gateway on the synthetic engine."""

from __future__ import annotations

import openai

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"


def test_a_repeated_long_prompt_reports_its_cached_tokens(synthetic_gateway: LiveServer) -> None:
    sdk = openai.OpenAI(base_url=f"{synthetic_gateway.url}/v1", api_key="unused")
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "cached prefix " * 100}
    ]
    first = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    second = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    assert first.usage is not None and second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    assert 0 < details.cached_tokens <= second.usage.prompt_tokens
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
