from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    PromptTooLong,
    SamplingParams,
    TokenDelta,
    TokenLogprob,
)
from engines.channel import generate
from engines.settings import SyntheticSettings
from engines.synthetic import SyntheticEngine


@pytest.fixture
async def engine() -> AsyncIterator[SyntheticEngine]:
    engine = SyntheticEngine(SyntheticSettings(token_seconds=0.001, max_batch_size=2))
    await engine.start()
    yield engine
    await engine.close()


def request(rid: str, max_tokens: int = 5, prompt: int = 3, stop: frozenset[int] = frozenset()):
    return GenerationRequest(
        rid, list(range(prompt)), SamplingParams(max_tokens, stop_token_ids=stop)
    )


async def collect(engine: SyntheticEngine, req: GenerationRequest) -> list[GenerationEvent]:
    return [event async for event in generate(engine, req)]


def tokens(events: list[GenerationEvent]) -> list[int]:
    return [t for e in events if isinstance(e, TokenDelta) for t in e.token_ids]


async def test_deterministic_tokens_then_length(engine: SyntheticEngine) -> None:
    events = await collect(engine, request("a", max_tokens=4, prompt=3))
    assert tokens(events) == [1003, 1004, 1005, 1006]
    assert events[-1] == Finished(FinishReason.LENGTH, 3, 4, 0, events[-1].queue_seconds)  # type: ignore[union-attr]


async def test_a_prompt_past_the_context_is_refused(engine: SyntheticEngine) -> None:
    with pytest.raises(PromptTooLong, match="takes at most 8191"):
        await collect(engine, request("a", prompt=8192))
    assert engine.stats().waiting == 0


async def test_stop_token_is_counted_but_not_yielded(engine: SyntheticEngine) -> None:
    events = await collect(engine, request("a", max_tokens=9, prompt=3, stop=frozenset({1005})))
    assert tokens(events) == [1003, 1004]
    final = events[-1]
    assert isinstance(final, Finished)
    assert (final.reason, final.completion_tokens) == (FinishReason.STOP, 3)


async def test_batch_size_bounds_running_and_queues_the_rest(engine: SyntheticEngine) -> None:
    runs = [asyncio.ensure_future(collect(engine, request(str(i), 20))) for i in range(4)]
    await asyncio.sleep(0.005)
    stats = engine.stats()
    assert (stats.running, stats.waiting) == (2, 2)
    results = await asyncio.gather(*runs)
    assert all(len(tokens(r)) == 20 for r in results)
    assert engine.stats().running == engine.stats().waiting == 0


async def test_closing_the_consumer_aborts_at_once(engine: SyntheticEngine) -> None:
    async with aclosing(generate(engine, request("a", 1000))) as events:
        await anext(events)
        assert engine.stats().running == 1
    assert engine.stats().running == 0
    assert engine.stats().kv_blocks_used == 0


async def test_prefix_cache_counts_repeated_prompt_blocks(engine: SyntheticEngine) -> None:
    await collect(engine, request("a", 1, prompt=200))
    events = await collect(engine, request("b", 1, prompt=200))
    assert events[-1].cached_tokens == 192  # type: ignore[union-attr]
    stats = engine.stats()
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (400, 192)


async def test_injected_engine_death_fails_every_stream_and_health() -> None:
    engine = SyntheticEngine(SyntheticSettings(token_seconds=0.001, fail_engine_after_tokens=5))
    await engine.start()
    runs = [asyncio.ensure_future(collect(engine, request(str(i), 50))) for i in range(3)]
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(r, EngineError) for r in results)
    assert not engine.healthy()
    with pytest.raises(EngineError):
        await collect(engine, request("late"))
    await engine.close()


async def test_close_ends_open_streams_with_abort() -> None:
    engine = SyntheticEngine(SyntheticSettings(token_seconds=0.01))
    await engine.start()
    run = asyncio.ensure_future(collect(engine, request("a", 1000)))
    await asyncio.sleep(0.03)
    await engine.close()
    final = (await run)[-1]
    assert isinstance(final, Finished)
    assert final.reason is FinishReason.ABORT


# Sampling fields


def sampled(rid: str, max_tokens: int = 4, prompt: int = 3, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(rid, list(range(prompt)), SamplingParams(max_tokens, **sampling))


def logprobs(events: list[GenerationEvent]) -> list[TokenLogprob]:
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert all(d.logprobs is not None and len(d.logprobs) == len(d.token_ids) for d in deltas)
    return [lp for d in deltas for lp in d.logprobs or ()]


async def test_logprobs_rank_the_emitted_token_first(engine: SyntheticEngine) -> None:
    events = await collect(engine, sampled("a", max_tokens=2, logprobs=3))
    assert tokens(events) == [1003, 1004]
    assert logprobs(events) == [
        TokenLogprob(-0.25, ((1003, -0.25), (1004, -1.25), (1005, -2.25))),
        TokenLogprob(-0.25, ((1004, -0.25), (1005, -1.25), (1006, -2.25))),
    ]
    zero = await collect(engine, sampled("b", max_tokens=2, logprobs=0))
    assert logprobs(zero) == [TokenLogprob(-0.25), TokenLogprob(-0.25)]


async def test_without_logprobs_deltas_carry_none(engine: SyntheticEngine) -> None:
    events = await collect(engine, sampled("a", max_tokens=2))
    assert all(e.logprobs is None for e in events if isinstance(e, TokenDelta))


async def test_a_forcing_logit_bias_decides_the_token(engine: SyntheticEngine) -> None:
    bias = ((7, 100.0), (9, 150.0), (1004, -100.0), (1005, 99.0))
    events = await collect(engine, sampled("a", max_tokens=2, logit_bias=bias))
    assert tokens(events) == [9, 9]  # the strongest bias wins
    events = await collect(engine, sampled("b", max_tokens=3, logit_bias=bias[2:]))
    assert tokens(events) == [1003, 1005, 1005]  # 1004 banned: the next id up instead


async def test_a_stop_id_can_be_forced(engine: SyntheticEngine) -> None:
    stop = frozenset({42})
    events = await collect(engine, sampled("a", 9, logit_bias=((42, 100.0),), stop_token_ids=stop))
    final = events[-1]
    assert tokens(events) == [] and isinstance(final, Finished)
    assert (final.reason, final.completion_tokens) == (FinishReason.STOP, 1)


async def test_min_tokens_holds_stop_ids_back(engine: SyntheticEngine) -> None:
    stop = frozenset({1004, 1006})
    events = await collect(engine, sampled("a", 9, min_tokens=3, stop_token_ids=stop))
    # 1004 comes up second and gives way to the next id up; 1006 stops as the fourth.
    assert tokens(events) == [1003, 1005, 1005]
    final = events[-1]
    assert isinstance(final, Finished)
    assert (final.reason, final.completion_tokens) == (FinishReason.STOP, 4)


async def test_seed_and_penalties_change_nothing(engine: SyntheticEngine) -> None:
    plain = tokens(await collect(engine, sampled("a", max_tokens=5)))
    knobs: dict[str, Any] = {
        "seed": 7,
        "presence_penalty": 1.5,
        "frequency_penalty": 1.0,
        "repetition_penalty": 2.0,
    }
    assert tokens(await collect(engine, sampled("b", max_tokens=5, **knobs))) == plain


async def test_constraints_are_refused(engine: SyntheticEngine) -> None:
    constrained = sampled("a", constraint=Constraint(ConstraintKind.JSON_OBJECT))
    with pytest.raises(EngineRequestError, match="cannot enforce constraints"):
        await collect(engine, constrained)
    assert engine.stats().waiting == engine.stats().running == 0
