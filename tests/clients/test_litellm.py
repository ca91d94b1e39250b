"""litellm's `completion()` through its OpenAI-compatible provider (`openai/<model>`).

litellm comes from the `litellm` fixture (tests/clients/conftest.py), which
imports it offline; it is never imported at module level here.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.clients.common import (
    CITY_FACTS_SCHEMA,
    CITY_QUESTION,
    MODEL,
    TIME_PARAMETERS,
    TIME_TOOL,
    TOOLS,
    WEATHER_PARAMETERS,
    WEATHER_QUESTION,
    validate,
)
from tests.conftest import LiveServer

# Warnings from inside litellm's streaming wrapper, which the filterwarnings=error
# setting would turn into errors (and litellm then into a MidStreamFallbackError):
# it builds a pydantic model of a TypedDict with ReadOnly items
# (litellm.types.llms.openai.ChatCompletionReasoningItem), and it reads
# `model_fields` and `model_computed_fields` from an instance (model_response_utils.py).
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem' is using "
        "the `ReadOnly` qualifier:UserWarning"
    ),
    pytest.mark.filterwarnings(
        r"ignore:Accessing the 'model_(computed_)?fields' attribute on the instance is "
        "deprecated:DeprecationWarning"
    ),
]
HELLO = [{"role": "user", "content": "Say hello."}]


def complete(litellm: ModuleType, server: LiveServer, **kwargs: Any) -> Any:
    return litellm.completion(
        model=f"openai/{MODEL}",
        api_base=f"{server.url}/v1",
        api_key="x",
        num_retries=0,
        timeout=60,
        **kwargs,
    )


def test_completion(litellm: ModuleType, synthetic_gateway: LiveServer) -> None:
    response = complete(litellm, synthetic_gateway, messages=HELLO, max_tokens=5)
    assert isinstance(response, litellm.ModelResponse)
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    choice = response.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.message.tool_calls is None
    assert response.usage.completion_tokens == 5
    assert response.usage.total_tokens == response.usage.prompt_tokens + 5


def test_streaming(litellm: ModuleType, synthetic_gateway: LiveServer) -> None:
    whole = complete(litellm, synthetic_gateway, messages=HELLO, max_tokens=6)
    stream = complete(
        litellm,
        synthetic_gateway,
        messages=HELLO,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(isinstance(chunk, litellm.ModelResponseStream) for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [r for r in reasons if r] == ["length"]
    rebuilt = litellm.stream_chunk_builder(chunks, messages=HELLO)
    assert rebuilt.choices[0].message.content == text
    assert rebuilt.usage.completion_tokens == 6


@pytest.mark.model
def test_streamed_named_tool_call(litellm: ModuleType, transformers_gateway: LiveServer) -> None:
    messages = [{"role": "user", "content": WEATHER_QUESTION}]
    stream = complete(
        litellm,
        transformers_gateway,
        messages=messages,
        tools=[TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    rebuilt = litellm.stream_chunk_builder(list(stream), messages=messages)
    choice = rebuilt.choices[0]
    assert choice.finish_reason in ("tool_calls", "stop")
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert isinstance(calls[0], litellm.ChatCompletionMessageToolCall)
    assert calls[0].id.startswith("call_")
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_time"
    validate(json.loads(calls[0].function.arguments), TIME_PARAMETERS)


@pytest.mark.model
def test_json_schema_response_format(litellm: ModuleType, transformers_gateway: LiveServer) -> None:
    response = complete(
        litellm,
        transformers_gateway,
        messages=[{"role": "user", "content": CITY_QUESTION}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city_facts", "schema": CITY_FACTS_SCHEMA, "strict": True},
        },
        max_tokens=40,
        temperature=0,
    )
    assert response.choices[0].finish_reason == "stop"
    validate(json.loads(response.choices[0].message.content), CITY_FACTS_SCHEMA)


@pytest.mark.model
def test_streamed_required_tool_call(litellm: ModuleType, transformers_gateway: LiveServer) -> None:
    messages = [{"role": "user", "content": WEATHER_QUESTION}]
    stream = complete(
        litellm,
        transformers_gateway,
        messages=messages,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    rebuilt = litellm.stream_chunk_builder(list(stream), messages=messages)
    choice = rebuilt.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name in ("get_weather", "get_time")
    if calls[0].function.name == "get_weather":
        validate(json.loads(calls[0].function.arguments), WEATHER_PARAMETERS)
