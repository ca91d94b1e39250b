"""engines/trtllm/sampling.py through the engine and the stand-in: what reaches
`tensorrt_llm.SamplingParams`, and how logprobs come back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    GenerationEvent,
    TokenDelta,
    TokenLogprob,
)
from engines.settings import TrtllmSettings
from engines.trtllm.sampling import Stops, token_logprobs
from tests.engines.trtllm.standin import Standin
from tests.engines.trtllm.standin_sampling import Logprob
from tests.engines.trtllm.test_engine import collect, engine_dir, final, request, running, tokens


def model(tmp_path: Path, vocab_size: int | None = 4096) -> Path:
    config: dict[str, Any] = {"max_position_embeddings": 512}
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def sent(standin: Standin) -> Any:
    """The SamplingParams of the latest request."""
    return standin.llm.requests[-1].sampling_params


def logprobs(events: list[GenerationEvent]) -> list[TokenLogprob]:
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert all(d.logprobs is not None and len(d.logprobs) == len(d.token_ids) for d in deltas)
    return [lp for d in deltas for lp in d.logprobs or ()]


# Stops, min_tokens and penalties


async def test_a_plain_request_leaves_the_new_fields_at_the_library_defaults(
    tmp_path: Path,
) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        events = await collect(engine, request(stop=(9,)))
    params = sent(standin)
    assert (params.min_tokens, params.repetition_penalty, params.prompt_ignore_length) == (
        None, None, None,
    )  # fmt: skip
    assert (params.presence_penalty, params.frequency_penalty) == (None, None)
    assert (params.embedding_bias, params.logprobs, params.guided_decoding) == (None, None, None)
    assert params.ignore_eos is False and params.detokenize is False
    assert all(isinstance(e, Finished) or e.logprobs is None for e in events)


async def test_penalties_are_mapped_and_presence_and_frequency_skip_the_prompt(
    tmp_path: Path,
) -> None:
    penalties: dict[str, Any] = {
        "repetition_penalty": 1.2,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
    }
    async with running(model(tmp_path)) as (engine, standin):
        await collect(engine, request((5, 6, 7, 8), **penalties))
    params = sent(standin)
    assert (params.repetition_penalty, params.presence_penalty, params.frequency_penalty) == (
        1.2, 0.5, -0.25,
    )  # fmt: skip
    assert params.prompt_ignore_length == 4  # OpenAI counts the output only


async def test_a_release_counting_the_prompt_refuses_presence_and_frequency(
    tmp_path: Path,
) -> None:
    old = frozenset({"prompt_ignore_length"})
    async with running(model(tmp_path), missing_sampling=old) as (engine, standin):
        await collect(engine, request(repetition_penalty=1.3))  # counts the prompt anyway
        penalties: list[dict[str, Any]] = [{"presence_penalty": 0.5}, {"frequency_penalty": 0.5}]
        for penalty in penalties:
            with pytest.raises(EngineRequestError, match=r"penalty: .* to the prompt"):
                await collect(engine, request(**penalty))
        assert len(standin.llm.requests) == 1 and engine.healthy()


async def test_no_stop_ids_means_no_end_id_at_all(tmp_path: Path) -> None:
    async with running(model(tmp_path), eos_after=1) as (engine, standin):
        events = await collect(engine, request(max_tokens=4))
    params = sent(standin)
    assert (params.end_id, params.ignore_eos, params.stop_token_ids) == (-1, True, [])
    assert final(events) == Finished(FinishReason.LENGTH, 3, 4)


async def test_min_tokens_holds_the_end_id_back(tmp_path: Path) -> None:
    async with running(model(tmp_path), eos_after=1) as (engine, standin):
        events = await collect(engine, request(max_tokens=9, stop=(2,), min_tokens=3))
    assert sent(standin).min_tokens == 3
    assert final(events) == Finished(FinishReason.STOP, 3, 4)


async def test_min_tokens_with_several_stop_ids_sends_the_smallest_alone(tmp_path: Path) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        await collect(engine, request(stop=(9, 2, 7), min_tokens=2))
        params = sent(standin)
        assert (params.end_id, params.stop_token_ids, params.min_tokens) == (2, [2], 2)
        await collect(engine, request(stop=(9, 2, 7)))  # without min_tokens the library has all
        assert (sent(standin).end_id, sent(standin).stop_token_ids) == (2, [2, 7, 9])
        # Nothing to hold back; the library would mask vocabulary entry -1 instead.
        await collect(engine, request(min_tokens=2))
    assert sent(standin).min_tokens is None


def test_a_late_stop_id_cuts_a_step_from_min_tokens_on() -> None:
    stops = Stops(frozenset({2}), frozenset({7, 9}), min_tokens=3)
    assert stops.cut([1, 7, 9, 7], generated=1) == 2  # the 7 is output token 2 of 3
    assert stops.cut([7, 9], generated=0) is None
    assert stops.cut([2, 5], generated=5) is None  # the end id is the library's
    assert Stops(frozenset({2, 7})).cut([7, 2], generated=9) is None


async def test_a_late_stop_id_cuts_its_logprobs_too(tmp_path: Path) -> None:
    drawn = {1: 7, 3: 7}
    async with running(model(tmp_path), drawn=drawn) as (engine, _):
        held = request(max_tokens=9, stop=(2, 7), min_tokens=2, logprobs=1)
        events = await collect(engine, held)
    assert tokens(events) == [1005, 7, 1007]
    assert [lp.logprob for lp in logprobs(events)] == [-2.75, -20.0, -2.75]  # none for the stop
    assert final(events) == Finished(FinishReason.STOP, 3, 4)


async def test_a_late_stop_id_on_the_last_token_is_a_stop(tmp_path: Path) -> None:
    async with running(model(tmp_path), drawn={3: 7}) as (engine, standin):
        events = await collect(engine, request(max_tokens=4, stop=(2, 7), min_tokens=2))
    assert tokens(events) == [1005, 1006, 1007]
    assert final(events) == Finished(FinishReason.STOP, 3, 4)
    assert standin.llm.requests[-1].abort_steps == []  # the library had finished it already


# Logit bias


async def test_logit_bias_becomes_a_float32_bias_over_the_vocabulary(tmp_path: Path) -> None:
    bias = ((1500, 100.0), (7, -5.0))
    async with running(model(tmp_path, vocab_size=4096)) as (engine, standin):
        events = await collect(engine, request(max_tokens=3, logit_bias=bias))
    tensor = sent(standin).embedding_bias
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (4096,)
    assert (tensor[1500].item(), tensor[7].item(), tensor.abs().sum().item()) == (100, -5, 105)
    assert tokens(events) == [1500, 1500, 1500]  # the stand-in obeys a bias of 100


async def test_an_engine_bias_has_the_engine_vocabulary_size(tmp_path: Path) -> None:
    path = engine_dir(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["pretrained_config"] = {"vocab_size": 3000}
    (path / "config.json").write_text(json.dumps(config))
    async with running(tmp_path, TrtllmSettings(engine_dir=path)) as (engine, standin):
        await collect(engine, request(logit_bias=((2999, 1.0),)))
    assert tuple(sent(standin).embedding_bias.shape) == (3000,)


async def test_logit_bias_needs_ids_in_a_known_vocabulary(tmp_path: Path) -> None:
    async with running(model(tmp_path, vocab_size=4096)) as (engine, standin):
        with pytest.raises(EngineRequestError, match=r"token id 4096 .* \[0, 4096\)"):
            await collect(engine, request(logit_bias=((4096, 1.0),)))
        assert standin.llm.requests == []
    async with running(model(tmp_path, vocab_size=None)) as (engine, _):
        with pytest.raises(EngineRequestError, match=r"logit_bias: .* no vocab_size"):
            await collect(engine, request(logit_bias=((5, 1.0),)))


# Constraints


@pytest.mark.parametrize(
    ("kind", "spec", "guide"),
    [
        (ConstraintKind.JSON_OBJECT, "", {"json_object": True}),
        (ConstraintKind.JSON_SCHEMA, '{"type": "object"}', {"json": '{"type": "object"}'}),
        (ConstraintKind.REGEX, "[0-9]+", {"regex": "[0-9]+"}),
        (ConstraintKind.GRAMMAR, 'root ::= "yes"', {"grammar": 'root ::= "yes"'}),
    ],
)
async def test_each_constraint_kind_is_its_guide(
    tmp_path: Path, kind: ConstraintKind, spec: str, guide: dict[str, Any]
) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        await collect(engine, request(constraint=Constraint(kind, spec)))
    sent_guide = sent(standin).guided_decoding
    unset = {"json": None, "regex": None, "grammar": None, "json_object": False}
    assert {name: getattr(sent_guide, name) for name in unset} == unset | guide


async def test_with_guided_decoding_off_constraints_are_refused(tmp_path: Path) -> None:
    settings = TrtllmSettings(guided_decoding=False)
    async with running(model(tmp_path), settings) as (engine, standin):
        assert standin.llm.kwargs["skip_tokenizer_init"] is True
        assert "guided_decoding_backend" not in standin.llm.kwargs
        with pytest.raises(EngineRequestError, match=r"constraint: .*trtllm\.guided_decoding"):
            await collect(engine, request(constraint=Constraint(ConstraintKind.JSON_OBJECT)))


async def test_a_release_without_guided_decoding_refuses_constraints(tmp_path: Path) -> None:
    old = frozenset({"guided_decoding_backend", "generation_config"})
    async with running(model(tmp_path), missing_fields=old) as (engine, standin):
        assert standin.llm.kwargs["skip_tokenizer_init"] is True
        assert "generation_config" not in standin.llm.kwargs
        with pytest.raises(EngineRequestError, match=r"constraint: .* has no guided decoding"):
            await collect(engine, request(constraint=Constraint(ConstraintKind.REGEX, "a")))


# Logprobs


async def test_logprobs_come_with_their_tokens_best_first(tmp_path: Path) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        events = await collect(engine, request((5, 6, 7), max_tokens=4, logprobs=2))
    assert sent(standin).logprobs == 2
    assert tokens(events) == [1005, 1006, 1007, 1005]
    # Position 0: ids 1000, 1001, ... rank 1, 2, ... at -0.25, -0.75, ...; 1005 ranks 6th.
    first, *_, last = logprobs(events)
    assert first == TokenLogprob(-2.75, ((1000, -0.25), (1001, -0.75)))
    assert last == TokenLogprob(-1.25, ((1003, -0.25), (1004, -0.75)))  # position 3


async def test_logprobs_zero_asks_for_one_and_keeps_the_sampled_token_only(
    tmp_path: Path,
) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        events = await collect(engine, request((5, 6, 7), max_tokens=3, logprobs=0))
    assert sent(standin).logprobs == 1  # 0 is falsy: no logprobs on some backends
    assert logprobs(events) == [TokenLogprob(-2.75), TokenLogprob(-2.75), TokenLogprob(-2.75)]


async def test_a_cut_stop_word_takes_its_logprob_with_it(tmp_path: Path) -> None:
    async with running(model(tmp_path)) as (engine, standin):
        events = await collect(engine, request((5, 6, 7), 9, stop=(2, 1007), logprobs=1))
    output = standin.llm.requests[-1].outputs[0]
    assert (len(output.token_ids), len(output.logprobs)) == (2, 3)  # the library cuts ids only
    assert tokens(events) == [1005, 1006] and len(logprobs(events)) == 2
    assert final(events) == Finished(FinishReason.STOP, 3, 3)


@pytest.mark.parametrize("include_end_id", [False, True])
async def test_the_end_ids_logprob_goes_with_it(tmp_path: Path, include_end_id: bool) -> None:
    ends = {"eos_after": 2, "include_end_id": include_end_id}
    async with running(model(tmp_path), None, **ends) as (engine, _):
        events = await collect(engine, request((5, 6, 7), 9, stop=(2,), logprobs=3))
    assert tokens(events) == [1005, 1006] and len(logprobs(events)) == 2


async def test_a_release_without_the_sampled_tokens_logprob_refuses_logprobs(
    tmp_path: Path,
) -> None:
    old = frozenset({"logprobs_mode", "logprobs_simple_format"})
    async with running(model(tmp_path), missing_sampling=old) as (engine, standin):
        with pytest.raises(EngineRequestError, match=r"logprobs: .* sampled token's logprob"):
            await collect(engine, request(logprobs=1))
        assert standin.llm.requests == []


async def test_an_engine_gives_logprobs_only_when_it_gathers_logits(tmp_path: Path) -> None:
    path = engine_dir(tmp_path)
    async with running(tmp_path, TrtllmSettings(engine_dir=path)) as (engine, _):
        with pytest.raises(EngineRequestError, match=r"trtllm\.gather_generation_logits"):
            await collect(engine, request(logprobs=0))
    settings = TrtllmSettings(engine_dir=path, gather_generation_logits=True)
    async with running(tmp_path, settings) as (engine, standin):
        events = await collect(engine, request((5, 6, 7), max_tokens=2, logprobs=0))
        assert standin.llm.kwargs["gather_generation_logits"] is True
    assert sent(standin).return_generation_logits is True  # what the library turns on
    assert logprobs(events) == [TokenLogprob(-2.75), TokenLogprob(-2.75)]


async def test_a_logprob_without_the_sampled_token_fails_that_request_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def top_only(vocab: Any, params: Any, token_id: int, position: int, **_: Any) -> Any:
        return {vocab.base: Logprob(-0.1, 1)}

    monkeypatch.setattr("tests.engines.trtllm.standin.token_logprobs", top_only)
    async with running(model(tmp_path)) as (engine, standin):
        with pytest.raises(EngineError, match="no logprob for the sampled token 1005"):
            await collect(engine, request(max_tokens=50, logprobs=1))
        assert len(standin.llm.requests[-1].abort_steps) == 1 and engine.healthy()


# token_logprobs on its own: the shapes releases return


def test_bare_floats_are_the_sampled_tokens_logprobs() -> None:
    assert token_logprobs([5, 6], [-0.5, -1.5], 0) == [TokenLogprob(-0.5), TokenLogprob(-1.5)]
    with pytest.raises(EngineError, match="no top logprobs"):
        token_logprobs([5], [-0.5], 1)


def test_the_top_is_cut_by_logprob_whatever_the_ranks() -> None:
    entry = {9: Logprob(-3.0, 0), 5: Logprob(-0.5, 0), 7: Logprob(-1.0, 0)}
    assert token_logprobs([9], [entry], 2) == [TokenLogprob(-3.0, ((5, -0.5), (7, -1.0)))]


def test_fewer_logprobs_than_tokens_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="1 logprobs for 2 tokens"):
        token_logprobs([5, 6], [-0.5], 0)
