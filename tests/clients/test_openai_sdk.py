"""The official `openai` SDK, feature by feature: tools, structured output, logprobs, n, text.

The plain chat shapes are in tests/conformance; here each feature is driven the
way users drive it, and the SDK's own parsing (its typed models, `.parse()`,
the `.stream()` helper's accumulation) is what the assertions read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.clients.common import (
    CITY_FACTS_SCHEMA,
    CITY_QUESTION,
    MODEL,
    TIME_PARAMETERS,
    TOOLS,
    WEATHER_PARAMETERS,
    WEATHER_QUESTION,
    CityFacts,
    Weather,
    validate,
)
from tests.conftest import LiveServer

SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
WEATHER: list[ChatCompletionMessageParam] = [{"role": "user", "content": WEATHER_QUESTION}]
CITY: list[ChatCompletionMessageParam] = [{"role": "user", "content": CITY_QUESTION}]
SEA: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write one sentence about the sea."}
]
TOOL_PARAMS: list[ChatCompletionToolParam] = TOOLS  # type: ignore[assignment]


@pytest.fixture
def model_sdk(transformers_gateway: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{transformers_gateway.url}/v1", api_key="x", max_retries=0, timeout=60
    ) as client:
        yield client


@pytest.fixture
def synthetic_sdk(synthetic_gateway: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{synthetic_gateway.url}/v1", api_key="x", max_retries=0, timeout=60
    ) as client:
        yield client


def function_calls(calls: object) -> list[ChatCompletionMessageFunctionToolCall]:
    assert isinstance(calls, list)
    assert all(isinstance(call, ChatCompletionMessageFunctionToolCall) for call in calls)
    return calls


def check_call(call: ChatCompletionMessageFunctionToolCall, name: str | None = None) -> None:
    """One call as OpenAI sends it: an id, type function, a known name, JSON object args."""
    assert call.id.startswith("call_")
    assert len(call.id) > len("call_")
    assert call.type == "function"
    assert call.function.name in SCHEMAS
    if name is not None:
        assert call.function.name == name
    validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


# --- tool calls ------------------------------------------------------------------------


@pytest.mark.model
def test_named_tool_choice_calls_that_tool(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL,
        messages=WEATHER,  # the question is about weather: the name must still win
        tools=TOOL_PARAMS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    # OpenAI ends a named tool_choice with "stop", vLLM with "tool_calls": clients read
    # the calls whichever it is.
    assert choice.finish_reason in ("tool_calls", "stop")
    calls = function_calls(choice.message.tool_calls)
    assert len(calls) == 1
    check_call(calls[0], "get_time")


@pytest.mark.model
def test_streamed_tool_call(model_sdk: openai.OpenAI) -> None:
    """The raw chunks, assembled by hand as agent frameworks do, and by the SDK's
    `chat.completions.stream` helper, which also parses a strict tool's arguments."""
    tool = openai.pydantic_function_tool(Weather, name="get_weather")
    with model_sdk.chat.completions.stream(
        model=MODEL,
        messages=WEATHER,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
        stream_options={"include_usage": True},
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    calls: dict[int, dict[str, str]] = {}
    content, reasons, roles, usage = "", [], [], None
    for chunk in (event.chunk for event in events if event.type == "chunk"):
        assert chunk.object == "chat.completion.chunk"
        if not chunk.choices:
            usage = chunk.usage
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        roles.append(delta.role)
        content += delta.content or ""
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
        for piece in delta.tool_calls or []:
            if piece.index not in calls:  # a call's first delta names it
                assert piece.id and piece.id.startswith("call_")
                assert piece.type == "function"
                assert piece.function is not None and piece.function.name
                calls[piece.index] = {"id": piece.id, "name": piece.function.name, "args": ""}
            else:  # later deltas of a call carry arguments only
                assert piece.id is None
                assert piece.function is None or not piece.function.name
            if piece.function is not None and piece.function.arguments:
                calls[piece.index]["args"] += piece.function.arguments
    assert roles[0] == "assistant"
    assert content == ""
    assert reasons in (["tool_calls"], ["stop"])
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    validate(json.loads(calls[0]["args"]), WEATHER_PARAMETERS)
    assert usage is not None
    assert usage.completion_tokens > 0

    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1
    assert (done[0].name, done[0].index) == ("get_weather", 0)
    assert isinstance(done[0].parsed_arguments, Weather)
    answer = final.choices[0]
    assert answer.finish_reason == reasons[0]
    assert answer.message.tool_calls
    call = answer.message.tool_calls[0]
    assert (call.id, call.function.arguments) == (calls[0]["id"], calls[0]["args"])
    assert call.function.parsed_arguments == Weather.model_validate_json(calls[0]["args"])


# --- structured output -----------------------------------------------------------------


@pytest.mark.model
def test_json_schema_output_validates(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL,
        messages=CITY,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city_facts", "schema": CITY_FACTS_SCHEMA, "strict": True},
        },
        max_tokens=40,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    validate(json.loads(choice.message.content), CITY_FACTS_SCHEMA)


@pytest.mark.model
def test_parse_with_a_pydantic_model(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.parse(
        model=MODEL, messages=CITY, response_format=CityFacts, max_tokens=40, temperature=0
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, CityFacts)
    assert message.refusal is None


@pytest.mark.model
def test_streamed_json_schema_output_validates(model_sdk: openai.OpenAI) -> None:
    with model_sdk.chat.completions.stream(
        model=MODEL, messages=CITY, response_format=CityFacts, max_tokens=40, temperature=0
    ) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, CityFacts)


@pytest.mark.model
def test_json_object_output_is_a_json_object(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": 'Reply with a JSON object like {"name": "Ann"} and nothing else.',
            }
        ],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content or ""), dict)


# --- logprobs --------------------------------------------------------------------------


@pytest.mark.model
def test_logprobs_and_top_logprobs(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL, messages=SEA, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None
    entries = choice.logprobs.content
    assert entries is not None
    assert completion.usage is not None
    assert len(entries) == completion.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert all(t <= 0 for t in tops)
        # greedy and untransformed: the chosen token is the likeliest one
        assert entry.top_logprobs[0].token == entry.token
        assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-4)


@pytest.mark.model
def test_streamed_logprobs_follow_the_content(model_sdk: openai.OpenAI) -> None:
    stream = model_sdk.chat.completions.create(
        model=MODEL,
        messages=SEA,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=1,
        stream=True,
    )
    text, tokens = "", []
    for chunk in stream:
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        if choice.logprobs is not None and choice.logprobs.content:
            tokens += [entry.token for entry in choice.logprobs.content]
            assert all(len(entry.top_logprobs) == 1 for entry in choice.logprobs.content)
    assert tokens
    assert "".join(tokens) == text


# --- n > 1 -----------------------------------------------------------------------------


def test_n_choices(synthetic_sdk: openai.OpenAI) -> None:
    completion = synthetic_sdk.chat.completions.create(model=MODEL, messages=SEA, max_tokens=5, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    for choice in completion.choices:
        assert choice.message.content
        assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 15


def test_n_choices_stream(synthetic_sdk: openai.OpenAI) -> None:
    stream = synthetic_sdk.chat.completions.create(
        model=MODEL,
        messages=SEA,
        max_tokens=4,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {0: "", 1: ""}
    reasons: dict[int, list[str]] = {0: [], 1: []}
    usage = None
    for chunk in stream:
        if not chunk.choices:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                reasons[choice.index].append(choice.finish_reason)
    assert texts[0] and texts[1]
    assert reasons == {0: ["length"], 1: ["length"]}
    assert usage is not None
    assert usage.completion_tokens == 8


@pytest.mark.model
def test_n_sampled_choices_with_the_model(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL, messages=SEA, max_tokens=4, n=2, temperature=1.0, seed=7
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 8
    assert all(c.message.content for c in completion.choices)


def test_cached_prompt_tokens_in_usage(synthetic_sdk: openai.OpenAI) -> None:
    """A repeated long prompt is served from the prefix cache: `prompt_tokens_details`."""
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "The sea, again and again. " * 40}
    ]
    first = synthetic_sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    second = synthetic_sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    assert first.usage is not None and second.usage is not None
    assert second.usage.prompt_tokens == first.usage.prompt_tokens > 128
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    assert 64 <= details.cached_tokens <= second.usage.prompt_tokens


# --- /v1/completions -------------------------------------------------------------------


@pytest.mark.model
def test_text_completion_logprobs(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
    )
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None
    assert logprobs.tokens is not None
    assert logprobs.token_logprobs is not None
    assert logprobs.top_logprobs is not None
    assert logprobs.text_offset is not None
    assert completion.usage is not None
    count = completion.usage.completion_tokens
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == count
    assert len(logprobs.top_logprobs) == len(logprobs.text_offset) == count
    assert "".join(logprobs.tokens) == choice.text
    offsets = [sum(len(t) for t in logprobs.tokens[:i]) for i in range(count)]
    assert logprobs.text_offset == offsets
    for token, logprob, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
    ):
        assert logprob <= 0
        assert 1 <= len(top) <= 2
        assert max(top.values()) == pytest.approx(logprob, abs=1e-4)
        assert token in top


@pytest.mark.model
def test_required_tool_choice_returns_a_valid_call(model_sdk: openai.OpenAI) -> None:
    completion = model_sdk.chat.completions.create(
        model=MODEL,
        messages=WEATHER,
        tools=TOOL_PARAMS,
        tool_choice="required",
        parallel_tool_calls=False,  # else the grammar allows more calls, and SmolLM2 goes on
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert choice.message.content is None
    calls = function_calls(choice.message.tool_calls)
    assert len(calls) == 1
    check_call(calls[0])
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 60


@pytest.mark.model
@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_cut_by_max_tokens_never_leaks_into_content(
    model_sdk: openai.OpenAI, stream: bool
) -> None:
    """Forced to call, the model is stopped 8 tokens in: inside the call's JSON."""
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": WEATHER,
        "tools": TOOL_PARAMS,
        "tool_choice": "required",
        "max_tokens": 8,
        "temperature": 0,
    }
    if stream:
        chunks = list(model_sdk.chat.completions.create(**request, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        reasons = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
    else:
        choice = model_sdk.chat.completions.create(**request).choices[0]
        content, calls, reasons = (
            choice.message.content or "",
            choice.message.tool_calls or [],
            [choice.finish_reason],
        )
    assert reasons == ["length"]
    assert content == "" and calls == []
