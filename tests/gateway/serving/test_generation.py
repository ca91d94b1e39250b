"""`Generation` as its engine request's sink, with a scripted engine and a recording outlet;
and usage as clients read it, over a live gateway on the synthetic engine.

Every end (the engine's finish, a stop string, a failure, the consumer gone) returns
from `drive` once, and aborts the engine's request exactly when it is still running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import openai
import pytest
from prometheus_client import CollectorRegistry, Counter

from engines.base import (
    EngineError,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    Sink,
)
from gateway.errors import EngineFailure
from gateway.serving.admission import Admission, Ticket
from gateway.serving.delivery import Delivery
from gateway.serving.generation import Generation
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.metrics import Metrics
from gateway.text.stops import StopMatcher
from gateway.text.streaming import ChoiceStream, Delta
from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"


class Words:
    def push(self, token_ids: Sequence[int]) -> str:
        return "".join(f" w{token_id}" for token_id in token_ids)


class ScriptedEngine:
    """The test takes the engine's steps through `sink`."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.aborts = 0

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        self.sink = sink
        return self._abort

    def _abort(self) -> None:
        self.aborts += 1

    def healthy(self) -> bool:
        return True


class Outlet:
    busy = False

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.finished_calls = 0

    def delta(self, generation: Generation, delta: Delta) -> None:
        self.texts.append(delta.content)

    async def finished(self, generation: Generation) -> None:
        self.finished_calls += 1


def generation(engine: ScriptedEngine, stops: Sequence[str] = ()) -> Generation:
    registry = CollectorRegistry()
    rejections = Counter("r", "r", ("model_name", "reason"), registry=registry)
    ticket = Ticket(Admission(8, 1000, 1, rejections, "m"), 2)
    matcher = StopMatcher(stops) if stops else None
    return Generation(
        engine,  # type: ignore[arg-type]
        GenerationRequest("r", [1, 2], SamplingParams(100)),
        ChoiceStream(0, Words(), matcher),  # type: ignore[arg-type]
        Metrics(registry, "m").request(time.perf_counter()),
        ticket,
        Lifecycle(grace_seconds=0.0, request_timeout=None).watch(),
        Delivery(),
    )


async def started(
    engine: ScriptedEngine, choice: Generation, outlet: Outlet
) -> tuple[asyncio.Task[None], Sink]:
    """`choice` driven in a task, once the engine has its request: the task and the sink."""
    driving = asyncio.create_task(choice.drive(outlet))
    while engine.sink is None:
        await asyncio.sleep(0)
    return driving, engine.sink


async def test_a_finished_request_is_not_aborted() -> None:
    engine, outlet = ScriptedEngine(), Outlet()
    choice = generation(engine)
    driving, sink = await started(engine, choice, outlet)
    sink.put([3])
    sink.put([4])  # the same step's: one delta
    sink.finish(Finished(FinishReason.LENGTH, 2, 2))
    await asyncio.wait_for(driving, 1)
    assert (outlet.texts, outlet.finished_calls, engine.aborts) == ([" w3 w4"], 1, 0)
    assert choice.usage is not None and choice.usage.completion_tokens == 2


async def test_a_stop_string_aborts_once_and_drops_what_the_engine_still_puts() -> None:
    engine, outlet = ScriptedEngine(), Outlet()
    choice = generation(engine, stops=["w4"])
    driving, sink = await started(engine, choice, outlet)
    sink.put([3])
    await asyncio.sleep(0)
    sink.put([4])
    await asyncio.wait_for(driving, 1)
    sink.put([5])
    sink.finish(Finished(FinishReason.LENGTH, 2, 3))
    await asyncio.sleep(0)
    assert "".join(outlet.texts) == " w3 "
    assert (choice.choice.finish_reason, engine.aborts) == (FinishReason.STOP, 1)


async def test_a_failure_after_tokens_raises_once_they_are_handed_on() -> None:
    engine, outlet = ScriptedEngine(), Outlet()
    choice = generation(engine)
    driving, sink = await started(engine, choice, outlet)
    sink.put([3])
    sink.fail(EngineError("boom"))
    with pytest.raises(EngineFailure, match="boom"):
        await asyncio.wait_for(driving, 1)
    assert (outlet.texts, outlet.finished_calls, engine.aborts) == ([" w3"], 0, 0)


async def test_a_consumer_that_goes_away_aborts_once() -> None:
    engine, outlet = ScriptedEngine(), Outlet()
    choice = generation(engine)
    driving, sink = await started(engine, choice, outlet)
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving
    sink.put([3])
    await asyncio.sleep(0)
    assert (outlet.texts, engine.aborts) == ([], 1)


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
