"""The transformers engine against the real embedded SmolLM2 (slow: marked `model`)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenDelta,
    TokenLogprob,
)
from engines.channel import generate
from engines.settings import TransformersSettings
from engines.transformers.engine import TransformersEngine
from engines.transformers.manager import placement

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_S = 60  # every wait is bounded: a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def eos(tokenizer: Any) -> int:
    return int(tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def france(tokenizer: Any) -> list[int]:
    return chat(tokenizer, "What is the capital of France?")


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> Any:
    """The same weights outside the engine, for reference outputs."""
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
async def engine(model_dir: Path) -> AsyncIterator[TransformersEngine]:
    engine = TransformersEngine(model_dir, TransformersSettings())
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture
async def fresh_engine(model_dir: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Engines of their own, for tests that break or close them."""
    engines: list[TransformersEngine] = []

    async def start(**settings: Any) -> TransformersEngine:
        engine = TransformersEngine(model_dir, TransformersSettings(**settings))
        engines.append(engine)
        await engine.start()
        return engine

    yield start
    for engine in engines:
        await engine.close()


def chat(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)


def greedy(
    prompt: list[int], max_tokens: int, stop: frozenset[int] = frozenset()
) -> GenerationRequest:
    sampling = SamplingParams(max_tokens, temperature=0.0, stop_token_ids=stop)
    return GenerationRequest("test", prompt, sampling)


def request_with(prompt: list[int], max_tokens: int, **sampling: Any) -> GenerationRequest:
    return GenerationRequest("test", prompt, SamplingParams(max_tokens, **sampling))


async def run(engine: TransformersEngine, request: GenerationRequest) -> tuple[list[int], Finished]:
    """Every generated id and the final event, checking the event order on the way."""
    tokens, _, final = await run_with_logprobs(engine, request)
    return tokens, final


async def run_with_logprobs(
    engine: TransformersEngine, request: GenerationRequest
) -> tuple[list[int], list[TokenLogprob], Finished]:
    tokens: list[int] = []
    logprobs: list[TokenLogprob] = []
    async with asyncio.timeout(TIMEOUT_S), aclosing(generate(engine, request)) as events:
        async for event in events:
            if isinstance(event, TokenDelta):
                assert event.token_ids, "a TokenDelta is never empty"
                tokens += event.token_ids
                if request.sampling.logprobs is None:
                    assert event.logprobs is None
                else:
                    assert event.logprobs is not None
                    assert len(event.logprobs) == len(event.token_ids)
                    logprobs += event.logprobs
            else:
                return tokens, logprobs, event
    raise AssertionError("the events ended without Finished")


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.02)


async def test_greedy_answer_stops_on_eos(engine, tokenizer, eos, france) -> None:
    tokens, final = await run(engine, greedy(france, 32, frozenset({eos})))

    assert "Paris" in tokenizer.decode(tokens)
    assert eos not in tokens
    assert final.reason is FinishReason.STOP
    assert final.completion_tokens == len(tokens) + 1  # the EOS counts, unsent
    assert final.prompt_tokens == len(france)
    assert final.queue_seconds >= 0


async def test_greedy_is_argmax(engine, hf_model, france) -> None:
    hf_model.generation_config.eos_token_id = None  # as the engine request: no stop id
    with torch.no_grad():
        output = hf_model.generate(torch.tensor([france]), do_sample=False, max_new_tokens=24)
    expected = output[0, len(france) :].tolist()

    tokens, final = await run(engine, greedy(france, 24))

    assert tokens == expected
    assert final.reason is FinishReason.LENGTH


async def test_max_tokens_gives_length(engine, france) -> None:
    tokens, final = await run(engine, greedy(france, 5))

    assert len(tokens) == 5
    assert final.reason is FinishReason.LENGTH
    assert final.completion_tokens == 5


async def test_any_stop_id_ends_generation_unsent(engine, france) -> None:
    reference, _ = await run(engine, greedy(france, 6))
    stop = reference[3]
    assert stop not in reference[:3]

    tokens, final = await run(engine, greedy(france, 6, frozenset({stop})))

    assert tokens == reference[:3]
    assert final.reason is FinishReason.STOP
    assert final.completion_tokens == 4


async def test_concurrent_requests_match_running_alone(engine, tokenizer, france) -> None:
    prompts = [france, chat(tokenizer, "Name three colors."), chat(tokenizer, "Say hello.")]
    alone = [(await run(engine, greedy(prompt, 12)))[0] for prompt in prompts]

    together = await asyncio.gather(*(run(engine, greedy(p, 12)) for p in prompts * 3))

    assert [tokens for tokens, _ in together] == alone * 3
    assert all(final.reason is FinishReason.LENGTH for _, final in together)


async def test_sampling_parameters_are_per_request(engine, france) -> None:
    sampled = GenerationRequest(
        "sampled", france, SamplingParams(8, temperature=1.3, top_p=0.9, top_k=20)
    )
    top_1 = GenerationRequest("top-1", france, SamplingParams(8, temperature=0.8, top_k=1))
    no_filter = GenerationRequest("no-filter", france, SamplingParams(8, temperature=1.0))
    # Logits divided by this overflow to inf: it must be greedy, not an engine crash.
    tiny = GenerationRequest("tiny", france, SamplingParams(8, temperature=1e-40))

    results = await asyncio.gather(
        run(engine, sampled),
        run(engine, top_1),
        run(engine, no_filter),
        run(engine, tiny),
        run(engine, greedy(france, 8)),
    )

    assert all(len(tokens) == 8 for tokens, _ in results)
    assert results[1][0] == results[3][0] == results[4][0]  # top_k=1 is greedy too


async def test_the_same_seed_gives_the_same_output(engine, france) -> None:
    def seeded(seed: int) -> GenerationRequest:
        return request_with(france, 16, temperature=1.0, seed=seed)

    first, _ = await run(engine, seeded(1))
    again, _ = await run(engine, seeded(1))
    other, _ = await run(engine, seeded(2))

    assert again == first
    assert other != first


async def test_logit_bias_forces_and_bans_tokens(engine, tokenizer, france) -> None:
    reference, _ = await run(engine, greedy(france, 4))
    banana = tokenizer.encode(" banana")[0]

    banned, forced = await asyncio.gather(
        run(engine, request_with(france, 4, temperature=0.0, logit_bias=((reference[0], -100.0),))),
        run(engine, request_with(france, 4, temperature=1.0, logit_bias=((banana, 100.0),))),
    )

    assert banned[0][0] != reference[0]
    assert forced[0] == [banana] * 4


async def test_min_tokens_holds_back_eos(engine, eos, france) -> None:
    natural, _ = await run(engine, greedy(france, 32, frozenset({eos})))
    min_tokens = len(natural) + 8

    tokens, _ = await run(
        engine,
        request_with(
            france, 64, temperature=0.0, min_tokens=min_tokens, stop_token_ids=frozenset({eos})
        ),
    )

    assert len(tokens) >= min_tokens
    assert eos not in tokens


async def test_penalties_change_the_output(engine, france) -> None:
    penalties = [
        {"frequency_penalty": 1.5},
        {"presence_penalty": 1.5},
        {"repetition_penalty": 1.5},
    ]
    reference, _ = await run(engine, greedy(france, 32))

    results = await asyncio.gather(
        *(run(engine, request_with(france, 32, temperature=0.0, **p)) for p in penalties)
    )

    for (tokens, _), params in zip(results, penalties, strict=True):
        assert tokens != reference, params


async def test_logprobs_are_of_the_models_logits(engine, hf_model, eos, france) -> None:
    request = request_with(france, 16, temperature=0.0, logprobs=5, stop_token_ids=frozenset({eos}))
    with torch.no_grad():
        first = torch.log_softmax(hf_model(torch.tensor([france])).logits[0, -1], dim=-1)

    tokens, logprobs, final = await run_with_logprobs(engine, request)

    assert final.reason is FinishReason.STOP
    assert len(logprobs) == len(tokens)  # none for the unsent EOS
    for token, record in zip(tokens, logprobs, strict=True):
        assert len(record.top) == 5
        values = [value for _, value in record.top]
        assert values == sorted(values, reverse=True)
        assert record.top[0] == (token, record.logprob)  # greedy: the top-1
    expected = torch.topk(first, 5)
    assert [t for t, _ in logprobs[0].top] == expected.indices.tolist()
    assert [v for _, v in logprobs[0].top] == pytest.approx(expected.values.tolist(), abs=1e-4)


async def test_json_schema_output_is_valid(engine, tokenizer, eos) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    prompt = chat(tokenizer, "Describe a person as JSON with a name and an age.")
    constraint = Constraint(ConstraintKind.JSON_SCHEMA, json.dumps(schema))
    request = request_with(
        prompt, 96, temperature=0.0, stop_token_ids=frozenset({eos}), constraint=constraint
    )

    tokens, final = await run(engine, request)

    assert final.reason is FinishReason.STOP
    jsonschema.validate(json.loads(tokenizer.decode(tokens)), schema)


async def test_json_object_without_stop_ids_ends_when_complete(engine, tokenizer) -> None:
    prompt = chat(tokenizer, "What is the capital of France? Answer in JSON.")
    constraint = Constraint(ConstraintKind.JSON_OBJECT)
    request = request_with(prompt, 200, temperature=0.0, constraint=constraint)  # ignore_eos

    tokens, final = await run(engine, request)

    assert final.reason is FinishReason.STOP
    assert final.completion_tokens == len(tokens)
    assert isinstance(json.loads(tokenizer.decode(tokens)), dict)


async def test_regex_and_grammar_constraints(engine, tokenizer, eos, france) -> None:
    stop = frozenset({eos})
    regex = Constraint(ConstraintKind.REGEX, r"(Paris|Lyon|Nice), [A-Z][a-z]+\.")
    grammar = Constraint(ConstraintKind.GRAMMAR, 'root ::= "The answer is " ("yes" | "no") "."')

    (by_regex, _), (by_grammar, _) = await asyncio.gather(
        run(
            engine, request_with(france, 32, temperature=0.0, stop_token_ids=stop, constraint=regex)
        ),
        run(
            engine,
            request_with(france, 32, temperature=0.7, stop_token_ids=stop, constraint=grammar),
        ),
    )

    assert re.fullmatch(regex.spec, tokenizer.decode(by_regex))
    assert tokenizer.decode(by_grammar) in ("The answer is yes.", "The answer is no.")


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        (ConstraintKind.JSON_SCHEMA, '{"type": "nonsense"}'),
        (ConstraintKind.REGEX, "(unclosed"),
        (ConstraintKind.GRAMMAR, "root ::= "),
    ],
)
async def test_invalid_constraints_are_request_errors(engine, france, kind, spec) -> None:
    request = request_with(france, 8, constraint=Constraint(kind, spec))

    with pytest.raises(EngineRequestError, match="invalid"):
        await run(engine, request)
    assert engine._live == {}
    assert engine._sampler.requests == {}


async def test_aborting_a_constrained_request_frees_its_state(engine, france) -> None:
    constraint = Constraint(ConstraintKind.REGEX, "[a-z ]+")  # never complete: runs on
    request = request_with(france, 500, temperature=0.0, constraint=constraint)

    async with aclosing(generate(engine, request)) as events:
        for _ in range(2):
            assert isinstance(await anext(events), TokenDelta)
        assert len(engine._sampler.requests) == 1

    assert engine._sampler.requests == {}
    assert engine._live == {}
    await wait_until(lambda: engine.stats().running == 0)


async def test_cancel_mid_stream_frees_the_request(engine, france) -> None:
    idle_blocks = engine.stats().kv_blocks_used
    reference, _ = await run(engine, greedy(france, 32))
    bystander = asyncio.create_task(run(engine, greedy(france, 32)))

    async with aclosing(generate(engine, greedy(france, 500))) as events:
        for _ in range(2):  # mid-decode, where a step is always in flight
            assert isinstance(await anext(events), TokenDelta)
        assert engine.stats().running >= 1
    # Cancelled by a task cancellation rather than a close, too.
    consumer = asyncio.create_task(run(engine, greedy(france, 500)))
    await wait_until(lambda: engine.stats().running >= 2)
    consumer.cancel()

    tokens, final = await bystander
    assert tokens == reference
    assert final.reason is FinishReason.LENGTH
    await wait_until(lambda: engine.stats().running == 0)
    await wait_until(lambda: engine.stats().kv_blocks_used == idle_blocks)
    await run(engine, greedy(france, 2))
    router = engine._manager.output_router
    assert router.result_handlers == {}
    assert router.output_queue.qsize() == 0  # no stray output of a cancelled request
    assert engine._live == {}
    assert engine._sampler.requests == {}


async def test_prefix_cache_serves_repeated_prompts(engine, tokenizer) -> None:
    # Blocks are whole pages of 256 tokens: the prompt must fill one.
    prompt = chat(tokenizer, "Summarise: " + "the quick brown fox jumps over the lazy dog. " * 40)
    assert len(prompt) > 300
    before = engine.stats()

    _, first = await run(engine, greedy(prompt, 2))
    _, second = await run(engine, greedy(prompt, 2))

    after = engine.stats()
    assert first.cached_tokens == 0
    assert second.cached_tokens == 256
    assert after.prefix_cache_queries - before.prefix_cache_queries == 2 * len(prompt)
    assert after.prefix_cache_hits - before.prefix_cache_hits == 256
    assert after.reused_blocks - before.reused_blocks == 1
    assert after.kv_blocks_used == 0  # kept for reuse, yet free


async def test_limits_and_idle_stats(engine) -> None:
    limits = engine.limits()
    stats = engine.stats()

    assert limits.max_seq_len == 8192  # the model's own, under the cache's 64 x 256
    assert limits.max_input_len == 8191
    assert limits.max_batch_size == 32
    assert limits.max_num_tokens == 512
    assert (stats.running, stats.waiting, stats.kv_blocks_used) == (0, 0, 0)
    assert stats.kv_blocks_total == 64
    assert engine.healthy()
    assert engine.name == "transformers"


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "message"),
    [
        ([], 4, "empty"),
        ([1] * 8192, 4, "8192 tokens"),
        ([1, 2], 0, "max_tokens"),
        ([1, 49152], 4, "vocabulary"),
        ([-1, 2], 4, "vocabulary"),
    ],
)
async def test_rejects_what_it_cannot_run(engine, prompt, max_tokens, message) -> None:
    with pytest.raises(EngineError, match=message):
        await run(engine, greedy(prompt, max_tokens))


async def test_context_length_ends_with_length(fresh_engine, france) -> None:
    engine = await fresh_engine(max_seq_len=48, num_blocks=4, block_size=16)
    assert engine.limits().max_seq_len == 48

    tokens, final = await run(engine, greedy(france, 100))

    assert len(tokens) == 48 - len(france)
    assert final.reason is FinishReason.LENGTH


async def test_close_ends_requests_in_flight(fresh_engine, france) -> None:
    engine = await fresh_engine()
    tasks = [asyncio.create_task(run(engine, greedy(france, 500))) for _ in range(3)]
    await wait_until(lambda: engine.stats().running == 3)

    await asyncio.wait_for(engine.close(), TIMEOUT_S)

    for tokens, final in await asyncio.gather(*tasks):
        assert final.reason is FinishReason.ABORT
        assert final.completion_tokens == len(tokens)
    assert not engine.healthy()
    with pytest.raises(EngineError, match="not running"):
        await run(engine, greedy(france, 4))


async def test_manager_crash_fails_open_requests(fresh_engine, france) -> None:
    engine = await fresh_engine()
    consumer = asyncio.create_task(run(engine, greedy(france, 500)))
    await wait_until(lambda: engine.stats().running == 1)

    def crash() -> None:
        raise RuntimeError("injected fault")

    engine._manager._generation_step = crash  # the next step raises on the manager thread

    with pytest.raises(EngineError, match="injected fault"):
        await consumer
    await wait_until(lambda: not engine.healthy())
    with pytest.raises(EngineError):
        await run(engine, greedy(france, 4))


async def test_cuda_device_loads_onto_the_gpu_and_needs_one(fresh_engine, monkeypatch) -> None:
    assert placement(TransformersSettings()) == {}  # the CPU path: from_pretrained's defaults
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert placement(TransformersSettings(device="cuda")) == {"device_map": "cuda"}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EngineError, match="sees no GPU"):
        await fresh_engine(device="cuda")


async def test_hub_kernels_stay_off_unless_asked(engine: TransformersEngine, hf_model: Any) -> None:
    """Air-gapped hosts: the load path never asks the Hub for kernels by default.

    transformers' own default (`use_kernels=None`) kernelizes wherever the `kernels`
    package is installed, which on CUDA means fetching kernels from the Hub.
    """
    assert hf_model.use_kernels is True  # transformers' default, here as on a GPU host
    assert engine._manager.model.use_kernels is False
