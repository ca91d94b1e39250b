"""The official `anthropic` SDK against `/v1/messages`: text, streams, stop sequences,
tool use round trips, count_tokens and errors, read through the SDK's own models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.clients.common import MODEL, WEATHER_PARAMETERS, WEATHER_QUESTION, validate
from tests.conftest import LiveServer

# The SDK has no `temperature` argument any more; the API (and this gateway) takes it.
GREEDY = {"temperature": 0}
HELLO: list[MessageParam] = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": WEATHER_PARAMETERS,
}


def client(server: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=60)


@pytest.fixture
def model_sdk(transformers_gateway: LiveServer) -> Iterator[anthropic.Anthropic]:
    with client(transformers_gateway) as sdk:
        yield sdk


@pytest.fixture
def synthetic_sdk(synthetic_gateway: LiveServer) -> Iterator[anthropic.Anthropic]:
    with client(synthetic_gateway) as sdk:
        yield sdk


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_message_has_anthropics_shape_and_usage(synthetic_sdk: anthropic.Anthropic) -> None:
    message = synthetic_sdk.messages.create(model=MODEL, max_tokens=7, messages=HELLO)
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == MODEL
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert [block.type for block in message.content] == ["text"]
    assert text_of(message)
    count = synthetic_sdk.messages.count_tokens(model=MODEL, messages=HELLO)
    assert message.usage.input_tokens == count.input_tokens > 0
    assert message.usage.output_tokens == 7


def test_the_stream_reassembles_to_the_message(synthetic_sdk: anthropic.Anthropic) -> None:
    whole = synthetic_sdk.messages.create(model=MODEL, max_tokens=12, messages=HELLO)
    with synthetic_sdk.messages.stream(model=MODEL, max_tokens=12, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert text_of(streamed) == text_of(whole)
    assert (streamed.stop_reason, streamed.usage.output_tokens) == ("max_tokens", 12)
    assert streamed.usage.input_tokens == whole.usage.input_tokens


def test_raw_events_are_named_and_framed_as_anthropic_sends_them(
    synthetic_gateway: LiveServer,
) -> None:
    body = {"model": MODEL, "max_tokens": 2, "messages": HELLO, "stream": True}
    response = httpx.post(f"{synthetic_gateway.url}/v1/messages", json=body)
    events = [block for block in response.text.split("\n\n") if block]
    names = [event.split("\n")[0] for event in events]
    assert names == [
        "event: message_start",
        "event: ping",
        "event: content_block_start",
        "event: content_block_delta",
        "event: content_block_delta",
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]
    assert "[DONE]" not in response.text


@pytest.mark.model
def test_a_stop_sequence_ends_the_message_and_is_named(model_sdk: anthropic.Anthropic) -> None:
    counting: list[MessageParam] = [
        {"role": "user", "content": "Count from 1 to 10, separated by commas."}
    ]
    message = model_sdk.messages.create(
        model=MODEL, max_tokens=40, extra_body=GREEDY, messages=counting, stop_sequences=["5"]
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "5"
    assert "5" not in text_of(message)


@pytest.mark.model
def test_a_forced_tool_use_round_trip(model_sdk: anthropic.Anthropic) -> None:
    question: list[MessageParam] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = model_sdk.messages.create(
        model=MODEL,
        max_tokens=60,
        extra_body=GREEDY,
        messages=question,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    validate(uses[0].input, WEATHER_PARAMETERS)
    answer = model_sdk.messages.create(
        model=MODEL,
        max_tokens=30,
        extra_body=GREEDY,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny, 21 C."}
                ],
            },
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert text_of(answer)


@pytest.mark.model
def test_a_streamed_tool_use_carries_its_input_as_json_deltas(
    model_sdk: anthropic.Anthropic,
) -> None:
    with model_sdk.messages.stream(
        model=MODEL,
        max_tokens=60,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as stream:
        partial = [event.type for event in stream if event.type == "input_json"]
        message = stream.get_final_message()
    assert partial  # the SDK's accumulated input_json_delta events
    (use,) = [block for block in message.content if block.type == "tool_use"]
    validate(use.input, WEATHER_PARAMETERS)
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"model": MODEL, "messages": HELLO}, 400, "invalid_request_error"),  # no max_tokens
        ({"model": "nope", "max_tokens": 5, "messages": HELLO}, 404, "not_found_error"),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
            },
            400,
            "invalid_request_error",
        ),
    ],
)
def test_errors_take_anthropics_shape(
    synthetic_gateway: LiveServer, body: dict[str, Any], status: int, kind: str
) -> None:
    response = httpx.post(f"{synthetic_gateway.url}/v1/messages", json=body)
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert error["error"]["message"]


def test_the_sdk_raises_its_own_errors(synthetic_sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError, match="does not exist"):
        synthetic_sdk.messages.create(model="nope", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError):
        synthetic_sdk.messages.create(model=MODEL, max_tokens=0, messages=HELLO)


@pytest.mark.model
def test_a_message_ended_by_eos_counts_the_same_streamed_and_not(
    model_sdk: anthropic.Anthropic,
) -> None:
    """The stop token is generated and counted, never sent: both shapes count it."""
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 200, "messages": HELLO}
    whole = model_sdk.messages.create(**request, extra_body=GREEDY)
    with model_sdk.messages.stream(**request, extra_body=GREEDY) as stream:
        streamed = stream.get_final_message()
    assert whole.stop_reason == streamed.stop_reason == "end_turn"
    assert text_of(streamed) == text_of(whole)
    assert streamed.usage.output_tokens == whole.usage.output_tokens
