"""The OpenAI Agents SDK with its default model, which calls `/v1/responses`: an agent
that answers, and one that runs a tool and answers from its output."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
)
from openai.types.responses import ResponseFunctionToolCall

from tests.clients.common import MODEL, WEATHER_QUESTION
from tests.conftest import LiveServer

# Offline: the SDK would otherwise send its traces to OpenAI.
OFFLINE = RunConfig(tracing_disabled=True)


@contextlib.asynccontextmanager
async def model(server: LiveServer) -> AsyncIterator[OpenAIResponsesModel]:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=180
    ) as client:
        yield OpenAIResponsesModel(model=MODEL, openai_client=client)


async def test_an_agent_answers(synthetic_gateway: LiveServer) -> None:
    async with model(synthetic_gateway) as responses:
        agent = Agent(
            name="greeter",
            instructions="Greet the user.",
            model=responses,
            model_settings=ModelSettings(max_tokens=5),
        )
        result = await Runner.run(agent, "Hello!", run_config=OFFLINE)
    assert isinstance(result.final_output, str) and result.final_output
    (response,) = result.raw_responses
    assert response.usage.output_tokens == 5
    assert response.response_id is not None and response.response_id.startswith("resp_")


@pytest.mark.model
async def test_an_agent_runs_a_tool_and_answers_from_it(transformers_gateway: LiveServer) -> None:
    calls: list[tuple[str, str]] = []

    @function_tool
    def get_weather(city: str, unit: str) -> str:
        """The current weather in a city.

        Args:
            city: The city's name.
            unit: celsius or fahrenheit.
        """
        calls.append((city, unit))
        return "Sunny, 21 C."

    async with model(transformers_gateway) as responses:
        agent = Agent(
            name="weather",
            instructions="Answer with the weather tool's result.",
            model=responses,
            tools=[get_weather],
            # Forced on the first turn; the SDK then resets it to auto, so the model answers.
            model_settings=ModelSettings(tool_choice="required", max_tokens=40, temperature=0),
        )
        result = await Runner.run(agent, WEATHER_QUESTION, max_turns=4, run_config=OFFLINE)
    assert len(calls) >= 1
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert kinds[-1] == "message_output_item"
    first_call = result.new_items[0].raw_item
    assert isinstance(first_call, ResponseFunctionToolCall)
    assert set(json.loads(first_call.arguments)) == {"city", "unit"}
    assert isinstance(result.final_output, str)
