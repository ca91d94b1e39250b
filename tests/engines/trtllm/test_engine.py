from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engines.base import (
    EngineError,
    EngineLimits,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TokenDelta,
)
from engines.channel import generate
from engines.settings import TrtllmSettings
from engines.trtllm.engine import TrtllmEngine, stats_from
from tests.engines.trtllm.standin import Standin, StandinConfig, installed


def checkpoint(tmp_path: Path, max_position_embeddings: int = 512) -> Path:
    (tmp_path / "config.json").write_text(
        json.dumps({"max_position_embeddings": max_position_embeddings})
    )
    return tmp_path


def engine_dir(tmp_path: Path, **build: int) -> Path:
    path = tmp_path / "engine"
    path.mkdir()
    config = {"max_seq_len": 256, "max_input_len": 128, "max_batch_size": 8} | build
    (path / "config.json").write_text(json.dumps({"build_config": config}))
    return path


@asynccontextmanager
async def running(
    model_dir: Path, settings: TrtllmSettings | None = None, **config: Any
) -> AsyncIterator[tuple[TrtllmEngine, Standin]]:
    with installed(StandinConfig(**config)) as standin:
        engine = TrtllmEngine(model_dir, settings or TrtllmSettings(stats_idle_seconds=0.05))
        await engine.start()
        try:
            yield engine, standin
        finally:
            await engine.close()


def request(
    prompt: tuple[int, ...] = (5, 6, 7), max_tokens: int = 5, stop: tuple[int, ...] = (), **kw: Any
) -> GenerationRequest:
    sampling = SamplingParams(max_tokens, stop_token_ids=frozenset(stop), **kw)
    return GenerationRequest("r", list(prompt), sampling)


async def collect(engine: TrtllmEngine, req: GenerationRequest) -> list[GenerationEvent]:
    return [event async for event in generate(engine, req)]


def tokens(events: list[GenerationEvent]) -> list[int]:
    return [t for e in events if isinstance(e, TokenDelta) for t in e.token_ids]


def final(events: list[GenerationEvent]) -> Finished:
    assert isinstance(events[-1], Finished)
    return events[-1]


async def eventually(check: Callable[[], bool], seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.002)


# Streaming, finish reasons and sampling


async def test_streams_each_steps_new_tokens_once(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, _):
        events = await collect(engine, request((5, 6, 7), max_tokens=5))
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert len(deltas) >= 2 and all(d.token_ids for d in deltas)
    assert tokens(events) == [1005, 1006, 1007, 1005, 1006]
    assert final(events) == Finished(FinishReason.LENGTH, 3, 5)


async def test_a_lagging_consumer_gets_the_backlog_in_one_delta(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        events = generate(engine, request(max_tokens=50))
        await anext(events)
        steps = standin.llm.executor.steps
        await eventually(lambda: standin.llm.executor.steps >= steps + 4)
        backlog = await anext(events)
        await events.aclose()
    assert isinstance(backlog, TokenDelta) and len(backlog.token_ids) >= 3


async def test_max_tokens_is_always_passed_and_clamped_to_the_context(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path, max_position_embeddings=64)) as (engine, standin):
        await collect(engine, request(max_tokens=40))
        events = await collect(engine, request(tuple(range(10)), max_tokens=100))
    sent = [r.sampling_params.max_tokens for r in standin.llm.requests]
    assert sent == [40, 54]
    assert final(events).completion_tokens == 54


async def test_sampling_fields_and_stop_ids_are_mapped(tmp_path: Path) -> None:
    sampled = request(stop=(9, 4), temperature=0.7, top_p=0.9, top_k=40, seed=3)
    async with running(checkpoint(tmp_path)) as (engine, standin):
        await collect(engine, sampled)
        await collect(engine, request(stop=(9,), temperature=0.0, top_p=0.5))
    params, greedy = (r.sampling_params for r in standin.llm.requests)
    assert (params.temperature, params.top_p, params.top_k, params.seed) == (0.7, 0.9, 40, 3)
    assert (params.stop_token_ids, params.end_id) == ([4, 9], 4)
    assert (greedy.top_k, greedy.temperature, greedy.top_p) == (1, None, None)


async def test_a_stop_id_ends_with_stop_and_counts_the_stop_token(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, _):
        events = await collect(engine, request((5, 6, 7), max_tokens=9, stop=(1007,)))
    assert tokens(events) == [1005, 1006]
    assert final(events) == Finished(FinishReason.STOP, 3, 3)


@pytest.mark.parametrize("include_end_id", [False, True])
async def test_the_end_id_stops_whether_or_not_the_backend_returns_it(
    tmp_path: Path, include_end_id: bool
) -> None:
    ends = {"eos_after": 2, "include_end_id": include_end_id}
    async with running(checkpoint(tmp_path), None, **ends) as (engine, standin):
        events = await collect(engine, request((5, 6, 7), max_tokens=9, stop=(2,)))
    assert standin.llm.requests[0].outputs[0].token_ids[-1:] == ([2] if include_end_id else [1006])
    assert tokens(events) == [1005, 1006]
    assert final(events) == Finished(FinishReason.STOP, 3, 3)


# Cancellation


async def test_closing_the_consumer_aborts_before_the_next_step(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        events = generate(engine, request(max_tokens=1000))
        await anext(events)
        step = standin.llm.executor.steps
        await events.aclose()
        result = standin.llm.requests[0]
        assert result.abort_steps == [step]
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        await eventually(lambda: result.finished)  # the final cancelled event was read
    assert result.outputs[0].finish_reason == "cancelled"
    assert len(result.outputs[0].token_ids) < 20


async def test_cancelling_the_consumer_task_aborts(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in generate(engine, request(max_tokens=1000)):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        result = standin.llm.requests[0]
        assert len(result.abort_steps) == 1
        await eventually(lambda: result.finished)


async def test_a_finished_request_is_not_aborted(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        events = generate(engine, request(max_tokens=3))
        async for _ in events:
            pass
        await events.aclose()
    assert standin.llm.requests[0].abort_steps == []


async def test_close_ends_open_streams_with_abort_and_shuts_down(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        events = generate(engine, request(max_tokens=1000))
        await anext(events)
        await engine.close()
        rest = [event async for event in events]
        assert isinstance(rest[-1], Finished) and rest[-1].reason is FinishReason.ABORT
        assert standin.llm.shutdown_calls == 1 and not engine.healthy()


# Errors


async def test_a_prompt_over_max_input_len_is_refused_before_submission(tmp_path: Path) -> None:
    settings = TrtllmSettings(engine_dir=engine_dir(tmp_path, max_input_len=8))
    async with running(tmp_path, settings) as (engine, standin):
        with pytest.raises(EngineError, match="at most 8"):
            await collect(engine, request(tuple(range(9))))
        assert standin.llm.requests == [] and engine.healthy()


async def test_a_failed_request_raises_and_leaves_the_engine_healthy(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path), reject_token=66) as (engine, _):
        with pytest.raises(EngineError, match="injected request failure"):
            await collect(engine, request((5, 66)))
        assert engine.healthy()
        assert tokens(await collect(engine, request((5,), max_tokens=2))) == [1005, 1005]


async def test_a_shut_down_executor_makes_the_engine_unhealthy(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        standin.llm.shutdown()
        with pytest.raises(EngineError, match="shutting down"):
            await collect(engine, request())
        assert not engine.healthy()


# Start-up: construction, version detection, limits


async def test_a_checkpoint_runs_on_the_pytorch_llm_with_the_configured_knobs(
    tmp_path: Path,
) -> None:
    settings = TrtllmSettings(
        free_gpu_memory_fraction=0.5,
        kv_cache_max_tokens=65536,
        max_batch_size=16,
        tensor_parallel_size=2,
    )
    async with running(checkpoint(tmp_path, 4096), settings) as (engine, standin):
        llm = standin.llm
        assert type(llm).__name__ == "LLM" and llm.model == tmp_path
        kwargs = llm.kwargs
        # xgrammar needs the library to hold the tokenizer; the gateway still detokenizes.
        assert kwargs["guided_decoding_backend"] == "xgrammar"
        assert (kwargs["skip_tokenizer_init"], kwargs["tokenizer"]) == (False, str(tmp_path))
        assert kwargs["generation_config"] == "trtllm"
        kv = kwargs["kv_cache_config"]
        assert (kv.enable_block_reuse, kv.free_gpu_memory_fraction, kv.max_tokens) == (
            True, 0.5, 65536,
        )  # fmt: skip
        assert kwargs["max_seq_len"] == 4096 and kwargs["enable_iter_perf_stats"] is True
        assert (kwargs["max_batch_size"], kwargs["tensor_parallel_size"]) == (16, 2)
        assert "max_num_tokens" not in kwargs  # unset: the library's default
        assert engine.limits() == EngineLimits(4096, 4095, 16, 8192)


async def test_an_engine_dir_runs_on_the_tensorrt_llm_and_keeps_its_built_limits(
    tmp_path: Path,
) -> None:
    path = engine_dir(tmp_path, max_seq_len=2048, max_input_len=1024, max_num_tokens=512)
    settings = TrtllmSettings(engine_dir=path, max_batch_size=4, max_seq_len=9999)
    async with running(tmp_path, settings) as (engine, standin):
        assert type(standin.llm).__name__ == "_TrtLLM" and standin.llm.model == path
        assert standin.llm.kwargs["tokenizer"] == str(tmp_path)  # the engine dir has none
        unset = {"max_seq_len", "enable_iter_perf_stats", "gather_generation_logits"}
        assert not unset & set(standin.llm.kwargs)
        # Without chunked prefill a prompt must fit in one step of max_num_tokens.
        assert engine.limits() == EngineLimits(2048, 512, 4, 512)


async def test_chunked_prefill_lifts_the_one_step_prompt_cap(tmp_path: Path) -> None:
    settings = TrtllmSettings(max_num_tokens=256, enable_chunked_prefill=True)
    async with running(checkpoint(tmp_path, 1024), settings) as (engine, standin):
        assert standin.llm.kwargs["enable_chunked_prefill"] is True
        assert engine.limits() == EngineLimits(1024, 1023, 2048, 256)
        assert final(await collect(engine, request(tuple(range(300)), 1))).prompt_tokens == 300


async def test_keywords_a_release_lacks_are_left_out(tmp_path: Path) -> None:
    missing = frozenset({"enable_chunked_prefill"})
    async with running(checkpoint(tmp_path), missing_fields=missing) as (engine, standin):
        assert "enable_chunked_prefill" not in standin.llm.kwargs
        assert engine.healthy()


async def test_a_release_without_the_engine_backend_fails_clearly(tmp_path: Path) -> None:
    settings = TrtllmSettings(engine_dir=engine_dir(tmp_path))
    release = StandinConfig(version="1.3.0rc24", engine_backend=False)
    with installed(release), pytest.raises(EngineError, match=r"_tensorrt_engine.*<=1\.2"):
        await TrtllmEngine(tmp_path, settings).start()


async def test_a_pre_1_0_release_is_refused(tmp_path: Path) -> None:
    with (
        installed(StandinConfig(version="0.21.0")),
        pytest.raises(EngineError, match=r"needs 1\.x"),
    ):
        await TrtllmEngine(checkpoint(tmp_path), TrtllmSettings()).start()


async def test_without_tensorrt_llm_start_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    with pytest.raises(EngineError, match="pip install tensorrt-llm"):
        await TrtllmEngine(checkpoint(tmp_path), TrtllmSettings()).start()


async def test_a_checkpoint_without_a_context_length_needs_max_seq_len(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with installed(), pytest.raises(EngineError, match=r"set trtllm\.max_seq_len"):
        await TrtllmEngine(tmp_path, TrtllmSettings()).start()


@pytest.mark.parametrize(("single", "env"), [(True, "1"), (False, "0")])
async def test_the_worker_process_choice_is_set_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single: bool, env: str
) -> None:
    monkeypatch.setenv("TLLM_WORKER_USE_SINGLE_PROCESS", "")  # restored after the test
    monkeypatch.delenv("TLLM_WORKER_USE_SINGLE_PROCESS")
    async with running(checkpoint(tmp_path), TrtllmSettings(single_process=single)):
        assert os.environ["TLLM_WORKER_USE_SINGLE_PROCESS"] == env


async def test_an_operators_own_worker_process_choice_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TLLM_WORKER_USE_SINGLE_PROCESS", "1")
    async with running(checkpoint(tmp_path), TrtllmSettings(single_process=False)):
        assert os.environ["TLLM_WORKER_USE_SINGLE_PROCESS"] == "1"
    assert "TLLM_WORKER_USE_SINGLE_PROCESS=1 is set: it wins" in caplog.text


# Stats


async def test_stats_follow_the_iterations_then_go_idle(tmp_path: Path) -> None:
    settings = TrtllmSettings(max_batch_size=2, stats_idle_seconds=0.05)
    async with running(checkpoint(tmp_path), settings) as (engine, _):
        runs = [asyncio.ensure_future(collect(engine, request(max_tokens=40))) for _ in range(3)]
        await eventually(lambda: engine.stats().waiting == 1)
        stats = engine.stats()
        assert stats.running == 2 and stats.kv_blocks_used > 0
        assert stats.kv_blocks_total == 4096
        assert engine.stats().step_seconds == pytest.approx(0.002)
        await asyncio.gather(*runs)
        await eventually(lambda: engine.stats().running == 0)


async def test_a_repeated_prompt_reuses_blocks(tmp_path: Path) -> None:
    prompt = tuple(range(10))  # two whole 4-token blocks
    async with running(checkpoint(tmp_path)) as (engine, _):
        await collect(engine, request(prompt, max_tokens=2))
        events = await collect(engine, request(prompt, max_tokens=2))
        await eventually(lambda: engine.stats().reused_blocks == 2)
        stats = engine.stats()
    assert final(events).cached_tokens == 8
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (16, 8)


async def test_one_stats_reader_that_rests_when_idle_and_rearms(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path)) as (engine, standin):
        await asyncio.gather(*(collect(engine, request(max_tokens=20)) for _ in range(4)))
        queue = standin.llm.executor.stats
        assert queue is not None
        await eventually(lambda: queue._done and queue.readers == 0)  # idle: the reader ended
        calls = standin.llm.stats_calls
        await collect(engine, request(max_tokens=20))
        await eventually(lambda: standin.llm.stats_calls > calls and queue.readers == 1)
        assert queue.max_readers == 1


async def test_a_request_as_the_reader_idles_out_keeps_it_reading(tmp_path: Path) -> None:
    settings = TrtllmSettings(stats_idle_seconds=0.2)
    async with running(checkpoint(tmp_path), settings) as (engine, standin):
        await collect(engine, request((5, 6, 7), max_tokens=3))
        calls, executor = standin.llm.stats_calls, standin.llm.executor
        executor.gate.clear()  # the next request's first record comes after the timeout
        late = asyncio.create_task(collect(engine, request(tuple(range(40)), max_tokens=3)))
        await eventually(lambda: standin.llm.stats_calls > calls)  # timed out, went on
        executor.gate.set()
        await late
        await eventually(lambda: engine.stats().kv_blocks_used >= 10)  # the late prompt's


async def test_a_failing_stats_reader_is_given_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def broken(timeout: float = 2) -> Any:
        calls.append(timeout)
        raise RuntimeError("no stats in this release")

    async with running(checkpoint(tmp_path)) as (engine, standin):
        monkeypatch.setattr(standin.llm, "get_stats_async", broken)
        for _ in range(3):
            assert tokens(await collect(engine, request(max_tokens=2))) == [1005, 1006]
        assert len(calls) == 1 and engine.healthy()
    assert caplog.text.count("iteration stats failed") == 1


async def test_no_stats_reader_when_iteration_stats_are_off(tmp_path: Path) -> None:
    settings = TrtllmSettings(iteration_stats=False)
    async with running(checkpoint(tmp_path), settings) as (engine, standin):
        await collect(engine, request())
        assert standin.llm.kwargs["enable_iter_perf_stats"] is False
        assert standin.llm.stats_calls == 0


def test_an_iteration_record_maps_onto_engine_stats() -> None:
    record = {
        "iterLatencyMS": 12.5,
        "numActiveRequests": 3,
        "numQueuedRequests": 1,
        "kvCacheStats": {
            "maxNumBlocks": 100,
            "freeNumBlocks": 60,
            "usedNumBlocks": 40,
            "tokensPerBlock": 32,
            "reusedBlocks": 5,
            "missedBlocks": 15,
            "cacheHitRate": 0.25,
        },
    }
    stats = stats_from(record)
    assert (stats.running, stats.waiting, stats.kv_blocks_total, stats.kv_blocks_used) == (
        3, 1, 100, 40,
    )  # fmt: skip
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits, stats.reused_blocks) == (
        640, 160, 5,
    )  # fmt: skip
    assert stats.step_seconds == 0.0125
