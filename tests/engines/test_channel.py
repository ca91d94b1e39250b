from __future__ import annotations

import asyncio

import pytest

from engines.base import EngineError, Finished, FinishReason, TokenDelta, TokenLogprob
from engines.channel import TokenChannel

DONE = Finished(FinishReason.LENGTH, prompt_tokens=1, completion_tokens=3)


async def test_a_lagging_consumer_gets_pending_tokens_in_one_delta() -> None:
    channel = TokenChannel()
    channel.put([1])
    channel.put([2, 3])
    channel.finish(DONE)
    assert [event async for event in channel.events()] == [TokenDelta([1, 2, 3]), DONE]


async def test_a_waiting_consumer_wakes_on_put() -> None:
    channel = TokenChannel()
    events = channel.events()
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    assert not pending.done()
    channel.put([7])
    assert await pending == TokenDelta([7])
    await events.aclose()


async def test_tokens_before_a_failure_are_delivered_then_it_raises() -> None:
    channel = TokenChannel()
    channel.put([1])
    channel.fail(EngineError("boom"))
    events = channel.events()
    assert await anext(events) == TokenDelta([1])
    with pytest.raises(EngineError, match="boom"):
        await anext(events)


def test_only_the_first_final_word_counts() -> None:
    channel = TokenChannel()
    assert not channel.closed
    channel.finish(DONE)
    channel.fail(EngineError("late"))
    assert channel.closed


async def test_logprobs_travel_with_their_tokens_when_asked_for() -> None:
    channel = TokenChannel(logprobs=True)
    first, second = TokenLogprob(-0.1, ((1, -0.1),)), TokenLogprob(-0.5)
    channel.put([1], [first])
    channel.put([2], [second])
    channel.finish(DONE)
    assert [event async for event in channel.events()] == [
        TokenDelta([1, 2], [first, second]),
        DONE,
    ]


async def test_a_consumer_that_leaves_early_abandons_the_request_once() -> None:
    abandoned: list[str] = []
    channel = TokenChannel(on_abandon=lambda: abandoned.append("abort"))
    events = channel.events()
    channel.put([1])
    assert await anext(events) == TokenDelta([1])
    await events.aclose()  # a stop string, or the client gone
    await events.aclose()
    assert abandoned == ["abort"]


@pytest.mark.parametrize("ending", ["finished", "failed"])
async def test_a_request_the_engine_ended_is_never_abandoned(ending: str) -> None:
    abandoned: list[str] = []
    channel = TokenChannel(on_abandon=lambda: abandoned.append("abort"))
    if ending == "finished":
        channel.finish(DONE)
        assert [event async for event in channel.events()] == [DONE]
    else:
        channel.fail(EngineError("gone"))
        with pytest.raises(EngineError):
            await anext(channel.events())
    assert abandoned == []
