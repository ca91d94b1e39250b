"""The adapter's answer to what differs between TensorRT-LLM releases, on each release the
stand-in models. Each preset's flags come from the sources named in
engines/trtllm/releases.py and tests/engines/trtllm/standin.py."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from engines.base import (
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    GenerationRequest,
)
from engines.channel import generate
from engines.settings import TrtllmSettings
from engines.trtllm import compat
from engines.trtllm.engine import TrtllmEngine
from tests.engines.trtllm.standin import MinTokens, Standin, StandinConfig, installed
from tests.engines.trtllm.test_engine import (
    checkpoint,
    collect,
    engine_dir,
    eventually,
    final,
    request,
    running,
    tokens,
)

_OLD_SAMPLING = frozenset({"prompt_ignore_length", "logprobs_mode", "logprobs_simple_format"})
_TORCH_SAMPLER_1X: dict[str, Any] = {
    "sampler_penalties": False,  # until NVIDIA/TensorRT-LLM#16485
    "sampler_seed": False,  # until #17172
    "missing_fields": frozenset({"generation_config"}),  # main's TorchLlmArgs only
}
RELEASES: dict[str, dict[str, Any]] = {
    "1.0.0": _TORCH_SAMPLER_1X
    | {"missing_sampling": _OLD_SAMPLING, "sampler_min_tokens": MinTokens.IGNORED},  # #7808
    "1.1.0": _TORCH_SAMPLER_1X
    | {"missing_sampling": _OLD_SAMPLING, "sampler_min_tokens": MinTokens.WHOLE_SEQUENCE},
    # prompt_ignore_length (#8127) and logprobs_mode (#9675) arrived in 1.2.
    "1.2.1": _TORCH_SAMPLER_1X | {"sampler_min_tokens": MinTokens.WHOLE_SEQUENCE},  # #12166
    # Main after the TensorRT backend's removal (#15918), _check_health, .error (#13119).
    "1.3.0rc26": {
        "engine_backend": False,
        "sampler_seed": False,
        "check_health": True,
        "errors_on_result": True,
    },
    "1.4.0rc1": {"engine_backend": False, "check_health": True, "errors_on_result": True},
}
ENGINE_RELEASES = [version for version, flags in RELEASES.items() if "engine_backend" not in flags]


def release(version: str, **more: Any) -> dict[str, Any]:
    return {"version": version} | RELEASES[version] | more


# Penalties: TorchSampler ignored them (#16485); the C++ decoder applies them.

PENALTIES: list[dict[str, Any]] = [
    {"repetition_penalty": 1.3},
    {"presence_penalty": 0.5},
    {"frequency_penalty": 0.5},
]


@pytest.mark.parametrize("version", RELEASES)
async def test_penalties_are_refused_where_the_pytorch_sampler_ignores_them(
    tmp_path: Path, version: str
) -> None:
    async with running(checkpoint(tmp_path), None, **release(version)) as (engine, standin):
        for penalty in PENALTIES:
            if version in ("1.0.0", "1.1.0", "1.2.1"):
                with pytest.raises(EngineRequestError, match=r"penalty: .* ignores .*#16485"):
                    await collect(engine, request((5, 6, 7), **penalty))
            else:
                # Applied: the stand-in then repeats no generated token.
                events = await collect(engine, request((5, 6, 7), **penalty))
                assert tokens(events) == [1005, 1006, 1007, 1008, 1009]
        submitted = 0 if version in ("1.0.0", "1.1.0", "1.2.1") else len(PENALTIES)
        assert len(standin.llm.requests) == submitted


async def test_the_stand_in_reproduces_the_ignored_penalties_of_1_2_1(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path), None, **release("1.2.1")) as (_, standin):
        params = standin.sampling_params_cls(end_id=-1, max_tokens=5, repetition_penalty=2.0)
        result = standin.llm.generate_async([5, 6, 7], params, streaming=False)
        async for _ in result:
            pass
    assert result.outputs[0].token_ids == [1005, 1006, 1007, 1005, 1006]


@pytest.mark.parametrize("version", ENGINE_RELEASES)
async def test_a_prebuilt_engine_applies_penalties_seeds_and_min_tokens(
    tmp_path: Path, version: str
) -> None:
    settings = TrtllmSettings(engine_dir=engine_dir(tmp_path), stats_idle_seconds=0.05)
    async with running(tmp_path, settings, **release(version, eos_after=1)) as (engine, _):
        held = await collect(engine, request(max_tokens=9, stop=(2,), min_tokens=3))
        assert final(held) == Finished(FinishReason.STOP, 3, 4)
        penalized = await collect(engine, request(max_tokens=5, repetition_penalty=1.3))
        assert tokens(penalized) == [1005, 1006, 1007, 1008, 1009]
        seeded = [request(max_tokens=6, seed=11, temperature=0.8) for _ in range(2)]
        first, second = [tokens(await collect(engine, r)) for r in seeded]
        assert first == second


# Seeds: TorchSampler drew from one generator for all requests until #17172.


@pytest.mark.parametrize("version", RELEASES)
async def test_a_sampled_requests_seed_is_refused_where_it_would_be_ignored(
    tmp_path: Path, version: str
) -> None:
    seeded = request(max_tokens=6, seed=11, temperature=0.8)
    async with running(checkpoint(tmp_path), None, **release(version)) as (engine, _):
        greedy = await collect(engine, request(max_tokens=3, seed=11, temperature=0.0))
        assert tokens(greedy) == [1005, 1006, 1007]  # a seed changes nothing greedy
        if version == "1.4.0rc1":
            first, second = [tokens(await collect(engine, seeded)) for _ in range(2)]
            assert first == second and first != [1005, 1006, 1007, 1005, 1006, 1007]
        else:
            with pytest.raises(EngineRequestError, match=r"seed: .*#17172.*temperature 0"):
                await collect(engine, seeded)


async def test_the_stand_in_reproduces_the_ignored_seed_of_1_3_0rc26(tmp_path: Path) -> None:
    async with running(checkpoint(tmp_path), None, **release("1.3.0rc26")) as (_, standin):
        outputs = []
        for _ in range(2):
            params = standin.sampling_params_cls(end_id=-1, max_tokens=6, seed=11, top_k=0)
            result = standin.llm.generate_async([5, 6, 7], params, streaming=False)
            async for _ in result:
                pass
            outputs.append(result.outputs[0].token_ids)
    assert outputs[0] != outputs[1]


# min_tokens: not applied before #7808, counted the prompt until #12166.


@pytest.mark.parametrize("version", RELEASES)
async def test_min_tokens_is_served_where_the_pytorch_sampler_counts_the_output(
    tmp_path: Path, version: str
) -> None:
    config = release(version, eos_after=1)
    async with running(checkpoint(tmp_path), None, **config) as (engine, standin):
        held = request(tuple(range(8)), max_tokens=9, stop=(2,), min_tokens=3)
        if version in ("1.0.0", "1.1.0", "1.2.1"):
            with pytest.raises(EngineRequestError, match=r"min_tokens: .*#7808, #12166"):
                await collect(engine, held)
            assert standin.llm.requests == []
        else:
            assert final(await collect(engine, held)) == Finished(FinishReason.STOP, 8, 4)
        # No stop id: nothing is held back, so nothing is refused or sent.
        unheld = await collect(engine, request(max_tokens=2, min_tokens=2))
        assert final(unheld) == Finished(FinishReason.LENGTH, 3, 2)
    assert standin.llm.requests[-1].sampling_params.min_tokens is None


async def test_the_stand_in_reproduces_min_tokens_counting_the_prompt(tmp_path: Path) -> None:
    config = release("1.2.1", eos_after=1)
    async with running(checkpoint(tmp_path), None, **config) as (_, standin):
        params = standin.sampling_params_cls(end_id=2, max_tokens=9, min_tokens=3)
        result = standin.llm.generate_async(list(range(8)), params, streaming=False)
        async for _ in result:
            pass
    assert result.outputs[0].token_ids == [1000]  # the 8-token prompt already counts past 3


# min_tokens with several stop ids: the library holds back its end id only (TorchSampler's
# _apply_min_length_penalty, the C++ decoder's penaltyKernels.cu); the engine ends on the rest.

DRAWN = {0: 7, 2: 9, 3: 9, 5: 7}  # two stop ids before min_tokens 3, then two past it


def several_stops() -> GenerationRequest:
    return request(max_tokens=9, stop=(2, 7, 9), min_tokens=3)


async def expect_the_first_stop_past_min_tokens(engine: TrtllmEngine, standin: Standin) -> None:
    events = await collect(engine, several_stops())
    assert tokens(events) == [7, 1006, 9]  # the early 7 and 9 are plain tokens
    assert final(events) == Finished(FinishReason.STOP, 3, 4)  # the 9 at 3 counted, unsent
    result = standin.llm.requests[-1]
    params = result.sampling_params
    assert (params.end_id, params.stop_token_ids, params.min_tokens) == (2, [2], 3)
    await eventually(lambda: result.finished)
    # Aborted at once: the library generated nothing past the stop.
    assert len(result.abort_steps) == 1
    assert result.outputs[0].token_ids == [7, 1006, 9, 9]
    assert result.outputs[0].finish_reason == "cancelled"


@pytest.mark.parametrize("version", RELEASES)
async def test_min_tokens_with_several_stop_ids_ends_at_the_first_one_past_it(
    tmp_path: Path, version: str
) -> None:
    config = release(version, drawn=DRAWN)
    async with running(checkpoint(tmp_path), None, **config) as (engine, standin):
        if version in ("1.0.0", "1.1.0", "1.2.1"):
            with pytest.raises(EngineRequestError, match=r"min_tokens: .*#7808, #12166"):
                await collect(engine, several_stops())
            assert standin.llm.requests == []
        else:
            await expect_the_first_stop_past_min_tokens(engine, standin)


@pytest.mark.parametrize("version", ENGINE_RELEASES)
async def test_a_prebuilt_engine_ends_min_tokens_at_the_first_stop_id_past_it(
    tmp_path: Path, version: str
) -> None:
    settings = TrtllmSettings(engine_dir=engine_dir(tmp_path), stats_idle_seconds=0.05)
    async with running(tmp_path, settings, **release(version, drawn=DRAWN)) as (engine, standin):
        await expect_the_first_stop_past_min_tokens(engine, standin)


@pytest.mark.parametrize("version", ["1.4.0rc1", *ENGINE_RELEASES])
async def test_the_stand_in_ends_on_a_stop_id_other_than_the_end_id_before_min_tokens(
    tmp_path: Path, version: str
) -> None:
    config = release(version, drawn={0: 2, 1: 7})
    on_engine = version in ENGINE_RELEASES  # the C++ decoder; else TorchSampler
    settings = TrtllmSettings(engine_dir=engine_dir(tmp_path)) if on_engine else None
    async with running(checkpoint(tmp_path), settings, **config) as (_, standin):
        params = standin.sampling_params_cls(
            end_id=2, stop_token_ids=[2, 7], max_tokens=9, min_tokens=3
        )
        result = standin.llm.generate_async([5, 6, 7], params, streaming=False)
        async for _ in result:
            pass
    # The end id drawn first is held back; the 7 ends the output though min_tokens is 3.
    assert (result.outputs[0].token_ids, result.outputs[0].finish_reason) == ([1005], "stop")


# Health: a dead worker, noticed without traffic.


@pytest.mark.parametrize("version", RELEASES)
async def test_a_dead_worker_makes_the_engine_unhealthy_without_a_request(
    tmp_path: Path, version: str
) -> None:
    async with running(checkpoint(tmp_path), None, **release(version)) as (engine, standin):
        events = generate(engine, request(max_tokens=1000))
        await anext(events)
        assert engine.healthy()
        standin.llm.kill_worker()  # 1.x: executor/proxy.py mpi_done_callback; main: _check_health
        assert not engine.healthy()
        with pytest.raises(EngineError, match="executor is gone"):
            await anext(events)
        with pytest.raises(EngineError):
            await collect(engine, request())
        assert not engine.healthy()


# Limits: the PyTorch executor lowers max_seq_len to the KV cache (KvCacheCreator).


@pytest.mark.parametrize("version", RELEASES)
async def test_a_kv_cache_smaller_than_max_seq_len_lowers_the_served_limit(
    tmp_path: Path, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    small = release(version, kv_blocks=50, tokens_per_block=4)  # 200 tokens
    async with running(checkpoint(tmp_path, 512), None, **small) as (engine, standin):
        assert engine.limits().max_seq_len == 512  # configured; nothing has run yet
        await collect(engine, request(max_tokens=2))
        await eventually(lambda: engine.limits().max_seq_len == 200)
        assert engine.limits().max_input_len == 199
        events = await collect(engine, request((5, 6, 7), max_tokens=400))
        assert standin.llm.requests[-1].sampling_params.max_tokens == 197
        assert final(events) == Finished(FinishReason.LENGTH, 3, 197)
    assert "holds 200 tokens per sequence, fewer than max_seq_len 512" in caplog.text


# Errors: since #13119 a failed request can end with .error set instead of raising.


@pytest.mark.parametrize("version", RELEASES)
async def test_a_failed_request_fails_with_its_message(tmp_path: Path, version: str) -> None:
    config = release(version, reject_token=66)
    async with running(checkpoint(tmp_path), None, **config) as (engine, standin):
        with pytest.raises(EngineRequestError, match="refused the request: injected request"):
            await collect(engine, request((5, 66)))
        assert engine.healthy()
        if config.get("errors_on_result"):
            assert standin.llm.requests[-1].error == "injected request failure"


# generation_config: passed only where the field takes "trtllm".


@pytest.mark.parametrize(
    ("values", "sent"), [(("auto", "trtllm"), "trtllm"), (("auto",), None), ((), None)]
)
async def test_generation_config_is_passed_only_where_it_takes_trtllm(
    tmp_path: Path, values: tuple[str, ...], sent: str | None
) -> None:
    missing = frozenset() if values else frozenset({"generation_config"})
    config = {"generation_configs": values or ("auto",), "missing_fields": missing}
    async with running(checkpoint(tmp_path), None, **config) as (_, standin):
        assert standin.llm.kwargs.get("generation_config") == sent


async def test_tensorrt_llm_is_imported_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    load = compat.load_api

    def recording(*, on_engine: bool) -> compat.TrtllmApi:
        threads.append(threading.current_thread())
        return load(on_engine=on_engine)

    monkeypatch.setattr("engines.trtllm.engine.load_api", recording)
    with installed(StandinConfig()):
        engine = TrtllmEngine(checkpoint(tmp_path), TrtllmSettings())
        await engine.start()
        await engine.close()
    assert threads and threads[0] is not threading.main_thread()
