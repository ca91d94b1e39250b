"""`langchain-openai`'s ChatOpenAI against the gateway, as LangChain users call it."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from tests.clients.common import (
    CITY_FACTS_SCHEMA,
    CITY_QUESTION,
    MODEL,
    TIME_PARAMETERS,
    TOOLS,
    WEATHER_QUESTION,
    CityFacts,
    Weather,
    validate,
)
from tests.conftest import LiveServer


def chat_model(server: LiveServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{server.url}/v1",
        api_key="x",  # type: ignore[arg-type]
        model=MODEL,
        max_retries=0,
        timeout=60,
        **kwargs,
    )


def merge(chunks: list[Any]) -> AIMessageChunk:
    """The streamed chunks added up, as LangChain's own aggregation does it."""
    assert len(chunks) > 1
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    merged: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    return merged


def check_tool_call(message: AIMessage, name: str, parameters: dict[str, Any]) -> None:
    assert message.invalid_tool_calls == []
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == name
    assert call["type"] == "tool_call"
    assert call["id"] is not None and call["id"].startswith("call_")
    validate(call["args"], parameters)


def test_invoke(synthetic_gateway: LiveServer) -> None:
    message = chat_model(synthetic_gateway, max_tokens=5).invoke("Say hello.")
    assert isinstance(message, AIMessage)
    assert isinstance(message.content, str) and message.content
    assert message.tool_calls == []
    assert message.response_metadata["finish_reason"] == "length"
    assert message.response_metadata["model_name"] == MODEL
    assert message.response_metadata["id"].startswith("chatcmpl-")
    usage = message.usage_metadata
    assert usage is not None
    assert usage["output_tokens"] == 5
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + 5


def test_stream_assembles_to_the_invoked_message(synthetic_gateway: LiveServer) -> None:
    llm = chat_model(synthetic_gateway, max_tokens=6, stream_usage=True)
    whole = llm.invoke("Say hello.")
    chunks = list(llm.stream("Say hello."))
    assert len(chunks) > 2
    merged = merge(chunks)
    assert merged.content == whole.content
    assert merged.response_metadata["finish_reason"] == "length"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 6


def test_logprobs_in_response_metadata(synthetic_gateway: LiveServer) -> None:
    message = chat_model(synthetic_gateway, max_tokens=4, logprobs=True, top_logprobs=2).invoke(
        "Say hello."
    )
    entries = message.response_metadata["logprobs"]["content"]
    assert len(entries) == 4
    assert "".join(entry["token"] for entry in entries) == message.content
    for entry in entries:
        assert entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())
        assert len(entry["top_logprobs"]) == 2


def test_cached_tokens_in_usage_metadata(synthetic_gateway: LiveServer) -> None:
    """LangChain reads usage.prompt_tokens_details.cached_tokens as `cache_read`."""
    llm = chat_model(synthetic_gateway, max_tokens=1)
    prompt = "The sea, again and again. " * 40
    llm.invoke(prompt)
    usage = llm.invoke(prompt).usage_metadata
    assert usage is not None
    assert 64 <= usage["input_token_details"]["cache_read"] <= usage["input_tokens"]


def test_tool_results_go_back_to_the_model(synthetic_gateway: LiveServer) -> None:
    """An agent's second turn: the assistant's call and the tool's answer are rendered."""
    history = [
        HumanMessage(WEATHER_QUESTION),
        AIMessage(
            "",
            tool_calls=[
                {
                    "name": "get_weather",
                    "args": {"city": "Paris", "unit": "celsius"},
                    "id": "call_1",
                    "type": "tool_call",
                }
            ],
        ),
        ToolMessage('{"temperature": 21}', tool_call_id="call_1"),
    ]
    llm = chat_model(synthetic_gateway, max_tokens=4).bind_tools(TOOLS)
    answer = llm.invoke(history)
    assert isinstance(answer, AIMessage)
    assert answer.content
    assert answer.usage_metadata is not None
    # the call and the result were in the prompt: it is longer than the question alone
    alone = chat_model(synthetic_gateway, max_tokens=4).bind_tools(TOOLS).invoke(history[:1])
    assert alone.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] > alone.usage_metadata["input_tokens"] + 10


@pytest.mark.model
def test_bind_tools_named(transformers_gateway: LiveServer) -> None:
    llm = chat_model(transformers_gateway, max_tokens=60, temperature=0)
    message = llm.bind_tools(TOOLS, tool_choice="get_time").invoke(WEATHER_QUESTION)
    assert isinstance(message, AIMessage)
    check_tool_call(message, "get_time", TIME_PARAMETERS)


@pytest.mark.model
def test_streamed_tool_call_chunks_assemble(transformers_gateway: LiveServer) -> None:
    """A pydantic class as the tool, named: the streamed chunks add up to the call."""
    llm = chat_model(transformers_gateway, max_tokens=60, temperature=0)
    merged = merge(list(llm.bind_tools([Weather], tool_choice="Weather").stream(WEATHER_QUESTION)))
    assert merged.tool_call_chunks
    assert merged.tool_call_chunks[0]["index"] == 0
    check_tool_call(merged, "Weather", Weather.model_json_schema())
    assert merged.response_metadata["finish_reason"] in ("tool_calls", "stop")


@pytest.mark.model
def test_structured_output_with_a_pydantic_model(transformers_gateway: LiveServer) -> None:
    llm = chat_model(transformers_gateway, max_tokens=40, temperature=0)
    facts = llm.with_structured_output(CityFacts, method="json_schema").invoke(CITY_QUESTION)
    assert isinstance(facts, CityFacts)


@pytest.mark.model
def test_structured_output_with_a_json_schema(transformers_gateway: LiveServer) -> None:
    llm = chat_model(transformers_gateway, max_tokens=40, temperature=0)
    structured = llm.with_structured_output(
        CITY_FACTS_SCHEMA, method="json_schema", include_raw=True
    )
    result = structured.invoke(CITY_QUESTION)
    assert isinstance(result, dict)
    assert result["parsing_error"] is None
    validate(result["parsed"], CITY_FACTS_SCHEMA)
    assert isinstance(result["raw"], AIMessage)
    assert result["raw"].response_metadata["finish_reason"] == "stop"


@pytest.mark.model
def test_bind_tools_required(transformers_gateway: LiveServer) -> None:
    llm = chat_model(transformers_gateway, max_tokens=60, temperature=0)
    tools = llm.bind_tools([Weather], tool_choice="required", parallel_tool_calls=False)
    message = tools.invoke(WEATHER_QUESTION)
    assert isinstance(message, AIMessage)
    check_tool_call(message, "Weather", Weather.model_json_schema())
    assert message.response_metadata["finish_reason"] == "tool_calls"
