"""`WorkerEngine` against real worker processes running the synthetic engine."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineError,
    EngineRequestError,
    Finished,
    GenerationEvent,
    GenerationRequest,
    PromptTooLong,
    SamplingParams,
    TokenDelta,
    TokenLogprob,
)
from engines.channel import TokenChannel, generate
from engines.settings import SyntheticSettings, TransformersSettings
from engines.synthetic import SyntheticEngine
from engines.worker import WorkerEngine
from engines.worker.wire import write_message

FAST = SyntheticSettings(token_seconds=0.002, worker=True)


@pytest.fixture
async def engine() -> AsyncIterator[WorkerEngine]:
    engine = WorkerEngine(Path("."), FAST)
    await engine.start()
    yield engine
    await engine.close()


def request(rid: str = "r", max_tokens: int = 5, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(rid, [1, 2, 3], SamplingParams(max_tokens, **sampling))


async def collect(
    engine: WorkerEngine | SyntheticEngine, req: GenerationRequest
) -> list[GenerationEvent]:
    async with aclosing(generate(engine, req)) as events:
        return [event async for event in events]


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never came true"
        await asyncio.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def merged(events: list[GenerationEvent]) -> tuple[list[int], list[TokenLogprob], Finished]:
    """Token ids and logprobs however they were split into deltas, and the last event."""
    deltas = [event for event in events if isinstance(event, TokenDelta)]
    ids = [token for delta in deltas for token in delta.token_ids]
    logprobs = [lp for delta in deltas for lp in delta.logprobs or ()]
    assert isinstance(events[-1], Finished)
    return ids, logprobs, events[-1]


async def test_output_is_the_same_as_the_engine_in_process(engine: WorkerEngine) -> None:
    inline = SyntheticEngine(FAST.model_copy(update={"worker": False}))
    await inline.start()
    try:
        samplings: list[dict[str, Any]] = [
            {},
            {"logprobs": 2},
            {"stop_token_ids": frozenset({1005})},
        ]
        for sampling in samplings:
            expected = await collect(inline, request(max_tokens=6, **sampling))
            got = await collect(engine, request(max_tokens=6, **sampling))
            assert merged(got)[:2] == merged(expected)[:2]
            final, want = merged(got)[2], merged(expected)[2]
            assert (final.reason, final.completion_tokens) == (want.reason, want.completion_tokens)
    finally:
        await inline.close()
    assert engine.name == "synthetic"
    assert engine.limits() == inline.limits()


async def test_concurrent_requests_each_get_their_own_tokens(engine: WorkerEngine) -> None:
    results = await asyncio.gather(
        *(collect(engine, request(f"r{i}", max_tokens=3 + i)) for i in range(20))
    )
    for i, events in enumerate(results):
        ids, _, final = merged(events)
        assert len(ids) == 3 + i
        assert final.completion_tokens == 3 + i


async def test_errors_keep_their_kind_across_the_process_boundary(engine: WorkerEngine) -> None:
    too_long = GenerationRequest("big", list(range(9000)), SamplingParams(5))
    with pytest.raises(PromptTooLong) as caught:
        await collect(engine, too_long)
    error = caught.value
    assert (error.prompt_tokens, error.limit, error.input_limit) == (9000, 8192, False)
    with pytest.raises(EngineRequestError, match="cannot enforce constraints"):
        await collect(engine, request(constraint=Constraint(ConstraintKind.JSON_OBJECT)))
    assert engine.healthy()


async def test_an_injected_request_failure_fails_that_request_only() -> None:
    engine = WorkerEngine(Path("."), FAST.model_copy(update={"fail_every_nth_request": 2}))
    await engine.start()
    try:
        assert len(merged(await collect(engine, request("ok")))[0]) == 5
        with pytest.raises(EngineError, match="injected request failure"):
            await collect(engine, request("bad"))
        assert engine.healthy()
    finally:
        await engine.close()


async def test_leaving_early_aborts_the_request_in_the_worker(engine: WorkerEngine) -> None:
    async with aclosing(generate(engine, request(max_tokens=100_000))) as events:
        await anext(events)
        await eventually(lambda: engine.stats().running == 1)  # the heartbeat's word
    await eventually(lambda: engine.stats().running == 0)


async def test_stats_after_a_request_are_current_when_its_last_event_arrives(
    engine: WorkerEngine,
) -> None:
    await collect(engine, GenerationRequest("a", list(range(128)), SamplingParams(2)))
    await collect(engine, GenerationRequest("b", list(range(128)), SamplingParams(2)))
    stats = engine.stats()
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (256, 128)


async def test_an_engine_that_dies_turns_unhealthy_with_its_error() -> None:
    engine = WorkerEngine(Path("."), FAST.model_copy(update={"fail_engine_after_tokens": 3}))
    await engine.start()
    try:
        with pytest.raises(EngineError, match="injected engine failure"):
            await collect(engine, request(max_tokens=10))
        assert not engine.healthy()
    finally:
        await engine.close()


async def test_ctrl_c_in_a_terminal_leaves_the_worker_to_the_gateway(engine: WorkerEngine) -> None:
    """Ctrl-C reaches the whole process group: the gateway drains, then closes its worker."""
    run = asyncio.ensure_future(collect(engine, request(max_tokens=50)))
    await asyncio.sleep(0.02)
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGINT)
    assert merged(await run)[2].completion_tokens == 50
    assert engine.healthy() and alive(engine.pid)


async def test_a_killed_worker_fails_every_open_request_and_the_engine(
    engine: WorkerEngine,
) -> None:
    runs = [
        asyncio.ensure_future(collect(engine, request(f"r{i}", max_tokens=100_000)))
        for i in range(3)
    ]
    await eventually(lambda: engine.stats().running == 3)
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGKILL)
    for run in runs:
        with pytest.raises(EngineError, match="killed by SIGKILL"):
            await run
    assert not engine.healthy()
    with pytest.raises(EngineError, match="killed by SIGKILL"):
        await engine.open(request(), TokenChannel())


async def test_a_worker_that_crashes_fails_every_open_request_with_its_exit(
    engine: WorkerEngine,
) -> None:
    run = asyncio.ensure_future(collect(engine, request(max_tokens=100_000)))
    await eventually(lambda: engine.stats().running == 1)
    assert engine._writer is not None
    write_message(engine._writer, ("no such message",))  # the worker raises on it
    with pytest.raises(EngineError, match="the engine worker failed: unknown message"):
        await run
    await eventually(lambda: not engine.healthy())  # once it has exited


async def test_a_worker_that_stops_answering_is_killed_within_the_silence_limit() -> None:
    engine = WorkerEngine(Path("."), FAST, silence_limit=1.0)
    await engine.start()
    try:
        run = asyncio.ensure_future(collect(engine, request(max_tokens=100_000)))
        await asyncio.sleep(0.05)
        assert engine.pid is not None
        pid = engine.pid
        os.kill(pid, signal.SIGSTOP)
        began = asyncio.get_running_loop().time()
        with pytest.raises(EngineError, match="stopped answering"):
            await run
        assert asyncio.get_running_loop().time() - began < 2.5
        assert not engine.healthy()
        await eventually(lambda: not alive(pid))
    finally:
        await engine.close()


async def test_close_ends_open_requests_and_the_worker(engine: WorkerEngine) -> None:
    run = asyncio.ensure_future(collect(engine, request(max_tokens=100_000)))
    await eventually(lambda: engine.stats().running == 1)
    pid = engine.pid
    await engine.close()
    events = await run  # the worker's engine ended it as it closed
    assert merged(events)[2].reason == "abort"
    assert pid is not None and not alive(pid)
    assert not engine.healthy()


async def test_a_worker_that_cannot_start_fails_start_up_with_its_reason(tmp_path: Path) -> None:
    engine = WorkerEngine(tmp_path / "no-model", TransformersSettings())
    with pytest.raises(EngineError, match=r"the engine worker could not start: .*no-model"):
        await engine.start()
    assert engine.pid is not None and not alive(engine.pid)
    await engine.close()  # as the lifespan does after a failed start: nothing left to do
    assert not engine.healthy()
