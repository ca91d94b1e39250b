"""The official `openai` SDK against `/v1/responses`: text, streams, tools with a
function_call_output round trip, json_schema, stored chains and their errors,
read through the SDK's own models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam, ResponseInputParam

from tests.clients.common import MODEL, WEATHER_PARAMETERS, WEATHER_QUESTION, validate
from tests.conftest import LiveServer

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=180)


@pytest.fixture
def synthetic_sdk(synthetic_gateway: LiveServer) -> Iterator[openai.OpenAI]:
    with client(synthetic_gateway) as sdk:
        yield sdk


@pytest.fixture
def model_sdk(transformers_gateway: LiveServer) -> Iterator[openai.OpenAI]:
    with client(transformers_gateway) as sdk:
        yield sdk


def test_a_response_has_openais_shape_and_usage(synthetic_sdk: openai.OpenAI) -> None:
    response = synthetic_sdk.responses.create(
        model=MODEL, input="Say hello.", max_output_tokens=7, metadata={"run": "1"}
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.incomplete_details) == ("incomplete", None) or (
        response.incomplete_details is not None
        and response.incomplete_details.reason == "max_output_tokens"
    )
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.status == "incomplete"
    assert response.output_text
    assert response.usage is not None
    assert response.usage.output_tokens == 7
    assert response.usage.total_tokens == response.usage.input_tokens + 7
    assert response.metadata == {"run": "1"}
    assert response.to_dict()["store"] is True


def test_the_stream_reassembles_to_the_response(synthetic_sdk: openai.OpenAI) -> None:
    whole = synthetic_sdk.responses.create(model=MODEL, input="Say hello.", max_output_tokens=12)
    with synthetic_sdk.responses.stream(
        model=MODEL, input="Say hello.", max_output_tokens=12
    ) as stream:
        events = list(stream)
    # Cut short by max_output_tokens, the response ends with `response.incomplete`, as
    # OpenAI's does; the SDK's get_final_response() waits for `response.completed` only.
    last = events[-1]
    assert last.type == "response.incomplete"
    streamed = last.response
    kinds = [event.type for event in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == streamed.output_text == whole.output_text
    assert streamed.usage is not None and whole.usage is not None
    assert streamed.usage.output_tokens == whole.usage.output_tokens == 12


def test_a_stored_chain_continues_across_three_turns(synthetic_sdk: openai.OpenAI) -> None:
    first = synthetic_sdk.responses.create(model=MODEL, input="One.", max_output_tokens=3)
    second = synthetic_sdk.responses.create(
        model=MODEL, input="Two.", max_output_tokens=3, previous_response_id=first.id
    )
    third = synthetic_sdk.responses.create(
        model=MODEL, input="Three.", max_output_tokens=3, previous_response_id=second.id
    )
    assert third.previous_response_id == second.id
    assert first.usage is not None and second.usage is not None and third.usage is not None
    # Each turn's prompt holds the earlier turns: their input and output.
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    got = synthetic_sdk.responses.retrieve(third.id)
    assert (got.id, got.output_text) == (third.id, third.output_text)
    synthetic_sdk.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        synthetic_sdk.responses.retrieve(third.id)
    with pytest.raises(openai.NotFoundError, match="not found"):
        synthetic_sdk.responses.create(
            model=MODEL, input="Four.", max_output_tokens=3, previous_response_id=third.id
        )


def test_an_unstored_response_cannot_be_found(synthetic_sdk: openai.OpenAI) -> None:
    response = synthetic_sdk.responses.create(
        model=MODEL, input="Hi.", max_output_tokens=2, store=False
    )
    assert response.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        synthetic_sdk.responses.retrieve(response.id)


def test_raw_events_are_named_and_numbered(synthetic_gateway: LiveServer) -> None:
    body = {"model": MODEL, "input": "Hi.", "max_output_tokens": 1, "stream": True}
    response = httpx.post(f"{synthetic_gateway.url}/v1/responses", json=body)
    events = [block.split("\n") for block in response.text.split("\n\n") if block]
    names = [name.removeprefix("event: ") for name, _ in events]
    payloads = [json.loads(data.removeprefix("data: ")) for _, data in events]
    assert names == [payload["type"] for payload in payloads]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [payload["sequence_number"] for payload in payloads] == list(range(9))
    assert "[DONE]" not in response.text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": "Hi.", "background": True}, 400, "background"),
        ({"input": "Hi.", "tools": [{"type": "web_search"}]}, 400, "tools"),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, 400, "input.0"),
        ({"input": "Hi.", "previous_response_id": "resp_nope"}, 404, "previous_response_id"),
        ({"input": "Hi.", "model": "nope"}, 404, "model"),
        ({"input": "Hi.", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"input": "Hi.", "truncation": "auto"}, 400, "truncation"),
    ],
)
def test_errors_take_openais_shape(
    synthetic_gateway: LiveServer, body: dict[str, Any], status: int, param: str
) -> None:
    response = httpx.post(f"{synthetic_gateway.url}/v1/responses", json={"model": MODEL, **body})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] is not None and error["param"].startswith(param)
    assert error["message"]


def test_unknown_ids_are_404s_in_openais_shape(synthetic_gateway: LiveServer) -> None:
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{synthetic_gateway.url}/v1/responses/resp_nope")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "response_not_found"


@pytest.mark.model
def test_a_tool_call_round_trip_with_its_output(model_sdk: openai.OpenAI) -> None:
    question: ResponseInputParam = [{"role": "user", "content": WEATHER_QUESTION}]
    first = model_sdk.responses.create(
        model=MODEL,
        input=question,
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=60,
        temperature=0,
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    validate(json.loads(call.arguments), WEATHER_PARAMETERS)
    answer = model_sdk.responses.create(
        model=MODEL,
        input=[
            *question,
            *first.output,  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."},
        ],
        tools=[WEATHER],
        max_output_tokens=30,
        temperature=0,
    )
    assert answer.output_text
    # The same turn again, from the stored first response: the prompt is the same.
    chained = model_sdk.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."}],
        tools=[WEATHER],
        max_output_tokens=30,
        temperature=0,
    )
    assert chained.output_text == answer.output_text
    assert chained.usage is not None and answer.usage is not None
    assert chained.usage.input_tokens == answer.usage.input_tokens


@pytest.mark.model
def test_a_streamed_call_carries_its_arguments_as_deltas(model_sdk: openai.OpenAI) -> None:
    with model_sdk.responses.stream(
        model=MODEL,
        input=WEATHER_QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=60,
        temperature=0,
    ) as stream:
        events = list(stream)
        response = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert "".join(deltas) == done.arguments == call.arguments
    validate(json.loads(call.arguments), WEATHER_PARAMETERS)
    assert response.status == "completed"


@pytest.mark.model
def test_json_schema_output_parses(model_sdk: openai.OpenAI) -> None:
    response = model_sdk.responses.create(
        model=MODEL,
        input="Describe the weather in Paris as JSON.",
        text={
            "format": {
                "type": "json_schema",
                "name": "weather",
                "schema": WEATHER_PARAMETERS,
                "strict": True,
            }
        },
        max_output_tokens=60,
        temperature=0,
    )
    validate(json.loads(response.output_text), WEATHER_PARAMETERS)


@pytest.mark.model
def test_streamed_and_whole_say_the_same_on_the_model(model_sdk: openai.OpenAI) -> None:
    """Greedy, so the same tokens: the stream's deltas reassemble to the whole response."""
    request: dict[str, Any] = {
        "model": MODEL,
        "input": "Name three colours.",
        "max_output_tokens": 40,
        "temperature": 0,
        "instructions": "Answer briefly.",
    }
    whole = model_sdk.responses.create(**request)
    with model_sdk.responses.stream(**request) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        streamed = stream.get_final_response()
    assert deltas == streamed.output_text == whole.output_text
    assert streamed.status == whole.status
    assert streamed.usage is not None and whole.usage is not None
    assert streamed.usage.output_tokens == whole.usage.output_tokens


def test_a_client_that_leaves_mid_stream_leaves_nothing_stored(
    synthetic_gateway: LiveServer,
) -> None:
    body = {"model": MODEL, "input": "Hi.", "stream": True, "max_output_tokens": 100_000}
    with httpx.stream("POST", f"{synthetic_gateway.url}/v1/responses", json=body) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: response.created"
        response_id = json.loads(next(lines).removeprefix("data: "))["response"]["id"]
    got = httpx.get(f"{synthetic_gateway.url}/v1/responses/{response_id}")
    assert got.status_code == 404
