"""The sampler processor on small tensors and a toy vocabulary: no model needed."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import xgrammar as xgr

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineRequestError,
    SamplingParams,
)
from engines.transformers.sampler import (
    NO_SLOT,
    RequestSampler,
    SamplerProcessor,
    apply_penalties,
    compile_constraint,
)

# A toy vocabulary: id 0 is the end of sequence.
VOCAB = ["<eos>", "a", "b", "c", "{", "}", "x", "y"]
PROMPT = [1, 2]  # "a", "b"
# Token 3 ("c") is the likeliest, then 6, 7, 1, ...
LOGITS = torch.tensor([0.0, 1.0, 0.5, 4.0, -1.0, -2.0, 3.0, 2.0])


@pytest.fixture(scope="module")
def compiler() -> xgr.GrammarCompiler:
    return xgr.GrammarCompiler(xgr.TokenizerInfo(VOCAB, stop_token_ids=[0]))


def sampler(grammar: xgr.CompiledGrammar | None = None, **params: Any) -> RequestSampler:
    return RequestSampler(SamplingParams(16, **params), PROMPT, len(VOCAB), grammar)


def processor_with(*samplers: RequestSampler) -> SamplerProcessor:
    processor = SamplerProcessor()
    for slot, request in enumerate(samplers):
        processor.requests[slot] = request
    return processor


def step(processor: SamplerProcessor, logits: torch.Tensor, slots: list[int]) -> torch.Tensor:
    """What the manager's argmax would then take from each row."""
    # The argument storage is longer than the batch: its defaults follow.
    scores = processor(logits.clone(), torch.tensor([*slots, NO_SLOT], dtype=torch.int32))
    return scores.argmax(dim=-1)


def run(request: RequestSampler, steps: int, logits: torch.Tensor = LOGITS) -> list[int]:
    processor = processor_with(request)
    return [int(step(processor, logits.unsqueeze(0), [0])[0]) for _ in range(steps)]


def test_prepare_tensor_args_reads_each_requests_slot() -> None:
    processor = SamplerProcessor()
    requests = [
        SimpleNamespace(state=SimpleNamespace(logit_processor_kwargs=kwargs))
        for kwargs in ({"sampler_slot": 7}, {}, {"sampler_slot": 2})
    ]
    defaults = torch.zeros(3, dtype=torch.int32)

    args = processor.prepare_tensor_args(requests)
    processor.fill_defaults(defaults)

    assert args.dtype == torch.int32
    assert args.tolist() == [7, NO_SLOT, 2]
    assert defaults.tolist() == [NO_SLOT] * 3
    assert processor.supported_kwargs == {"sampler_slot": int}


def test_rows_without_a_sampler_are_left_to_the_managers_argmax() -> None:
    processor = processor_with(sampler(temperature=0.0))
    scores = torch.stack([LOGITS, LOGITS.flip(0)])

    out = processor(scores, torch.tensor([0, 5], dtype=torch.int32))  # slot 5: gone

    assert out is scores
    assert torch.equal(out, torch.stack([LOGITS, LOGITS.flip(0)]))


@pytest.mark.parametrize("temperature", [0.0, 1e-40, math.nan])
def test_tiny_or_nan_temperatures_are_greedy(temperature: float) -> None:
    request = sampler(temperature=temperature)

    assert request.greedy
    assert run(request, 3) == [3, 3, 3]


def test_a_sampled_row_keeps_only_its_token_and_greedy_rows_stay() -> None:
    processor = processor_with(sampler(temperature=1.0), sampler(temperature=0.0, logprobs=0))
    scores = torch.stack([LOGITS, LOGITS])

    out = processor(scores, torch.tensor([0, 1], dtype=torch.int32))

    finite = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert len(finite) == 1 and out[0, finite[0]] == 0.0
    assert torch.equal(out[1], LOGITS)


def test_top_k_and_top_p_draw_only_inside_their_nucleus() -> None:
    top_k = sampler(temperature=1.0, top_k=2, seed=1)
    top_p = sampler(temperature=1.0, top_p=0.5, seed=1)  # token 3 alone holds 0.6

    assert set(run(top_k, 50)) == {3, 6}
    assert set(run(top_p, 50)) == {3}
    assert len(set(run(sampler(temperature=1.0, seed=1), 50))) > 2


def test_the_same_seed_draws_the_same_tokens() -> None:
    uniform = torch.zeros(len(VOCAB))
    first = run(sampler(temperature=1.0, seed=7), 20, uniform)

    assert run(sampler(temperature=1.0, seed=7), 20, uniform) == first
    assert run(sampler(temperature=1.0, seed=8), 20, uniform) != first


def test_apply_penalties_arithmetic() -> None:
    row = torch.tensor([2.0, -2.0, 1.0, 0.5, 3.0])
    seen = torch.tensor([True, True, False, False, False])
    counts = torch.tensor([0.0, 0.0, 2.0, 1.0, 0.0])

    apply_penalties(row, counts, seen, presence=1.0, frequency=0.5, repetition=2.0)

    # Repetition divides positive and multiplies negative logits of seen tokens;
    # then each generated token loses frequency x count, plus presence once.
    assert row.tolist() == [1.0, -4.0, -1.0, -1.0, 3.0]


def test_presence_and_frequency_count_generated_tokens() -> None:
    logits = torch.tensor([0.0, 0.0, 0.0, 5.0, 4.5, 4.2, 0.0, 0.0])

    assert run(sampler(temperature=0.0), 3, logits) == [3, 3, 3]
    assert run(sampler(temperature=0.0, presence_penalty=1.0), 3, logits) == [3, 4, 5]
    # 5 - 0.4n: token 3 until it falls under 4.5 after two picks.
    assert run(sampler(temperature=0.0, frequency_penalty=0.4), 4, logits) == [3, 3, 4, 3]


def test_repetition_penalises_the_prompt_too() -> None:
    logits = torch.tensor([0.0, 5.0, 4.5, 3.0, 0.0, 0.0, 0.0, 0.0])  # 1 and 2 are the prompt

    assert run(sampler(temperature=0.0), 1, logits) == [1]
    assert run(sampler(temperature=0.0, repetition_penalty=2.0), 2, logits) == [3, 1]


def test_logit_bias_forces_and_bans() -> None:
    assert run(sampler(temperature=1.0, logit_bias=((5, 100.0),)), 5) == [5] * 5
    assert run(sampler(temperature=0.0, logit_bias=((3, -100.0),)), 2) == [6, 6]


def test_logit_bias_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(EngineRequestError, match="logit_bias"):
        sampler(logit_bias=((len(VOCAB), 1.0),))


def test_min_tokens_holds_back_the_stop_ids() -> None:
    eos_first = torch.tensor([9.0, 1.0, 0.5, 4.0, -1.0, -2.0, 3.0, 2.0])
    request = sampler(temperature=0.0, min_tokens=2, stop_token_ids=frozenset({0}))

    assert run(request, 3, eos_first) == [3, 3, 0]


def test_logprobs_are_of_the_raw_logits_best_first() -> None:
    request = sampler(temperature=0.0, logprobs=3, logit_bias=((1, 10.0),))
    none_asked = sampler(temperature=0.0, logprobs=0)
    raw = torch.log_softmax(LOGITS, dim=0)

    assert run(request, 2) == [1, 1]
    run(none_asked, 1)

    record = request.logprobs[0]
    assert record.logprob == pytest.approx(float(raw[1]))  # before the bias
    assert [token for token, _ in record.top] == [3, 6, 7]
    assert [value for _, value in record.top] == pytest.approx(raw[[3, 6, 7]].tolist())
    assert len(request.logprobs) == 2
    assert none_asked.logprobs[0].top == ()
    assert none_asked.logprobs[0].logprob == pytest.approx(float(raw.max()))


def test_a_grammar_leads_to_a_stop_id(compiler: xgr.GrammarCompiler) -> None:
    grammar = compiler.compile_grammar('root ::= "a" "b"')
    request = sampler(grammar, temperature=1.0, stop_token_ids=frozenset({0}))

    assert run(request, 3) == [1, 2, 0]
    assert request.matcher is not None and request.matcher.is_terminated()


def test_a_grammar_without_stop_ids_ends_once_it_must(compiler: xgr.GrammarCompiler) -> None:
    request = sampler(compiler.compile_grammar('root ::= "a" "b"'), temperature=0.0)

    tokens = run(request, 4)

    assert tokens[:2] == [1, 2]
    assert request.ended_at == 2
    assert request.generated == 2


def test_a_grammar_without_stop_ids_goes_on_while_it_can(compiler: xgr.GrammarCompiler) -> None:
    eos_first = torch.tensor([9.0, 1.0, 0.5, 4.0, -1.0, -2.0, 3.0, 2.0])
    request = sampler(compiler.compile_grammar('root ::= "a" "b"+'), temperature=0.0)

    assert run(request, 5, eos_first) == [1, 2, 2, 2, 2]
    assert request.ended_at is None


def test_min_tokens_gives_way_to_a_complete_grammar(compiler: xgr.GrammarCompiler) -> None:
    grammar = compiler.compile_grammar('root ::= "a"')
    request = sampler(grammar, temperature=0.0, min_tokens=5, stop_token_ids=frozenset({0}))

    assert run(request, 2) == [1, 0]


def test_a_fault_fails_the_batchs_requests_not_the_manager_thread() -> None:
    faulty, bystander = sampler(temperature=0.0, logprobs=1), sampler(temperature=1.0)
    processor = processor_with(faulty, bystander)

    def fail(row: torch.Tensor) -> None:
        raise RuntimeError("injected fault")

    faulty.prepare = fail  # type: ignore[method-assign]
    step(processor, torch.stack([LOGITS, LOGITS]), [0, 1])

    assert faulty.error is not None and "injected fault" in faulty.error
    assert bystander.error is not None
    assert faulty.done


@pytest.mark.parametrize(
    ("kind", "spec", "text"),
    [
        (ConstraintKind.JSON_OBJECT, "", "{}"),
        (ConstraintKind.JSON_SCHEMA, '{"type": "object", "maxProperties": 0}', "{}"),
        (ConstraintKind.REGEX, "ab+", "abb"),
        (ConstraintKind.GRAMMAR, 'root ::= "x" "y"', "xy"),
    ],
)
def test_compile_constraint_for_each_kind(compiler, kind, spec, text) -> None:
    matcher = xgr.GrammarMatcher(compile_constraint(compiler, Constraint(kind, spec)))

    assert matcher.accept_string(text)
    assert matcher.is_completed()


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (ConstraintKind.JSON_SCHEMA, '{"type": "nonsense"}', 'Unsupported type "nonsense"'),
        (ConstraintKind.JSON_SCHEMA, "{not json", "json_schema"),
        (ConstraintKind.REGEX, "(", "parenthesis"),
        (ConstraintKind.GRAMMAR, 'root ::= "a" |', "EBNF"),
    ],
)
def test_invalid_constraints_are_request_errors(compiler, kind, spec, message) -> None:
    with pytest.raises(EngineRequestError, match=message) as caught:
        compile_constraint(compiler, Constraint(kind, spec))

    assert not str(caught.value).split(": ", 1)[1].startswith("[")  # no xgrammar source line


def _accepts(grammar: xgr.CompiledGrammar, text: str) -> bool:
    """The whole of `text`, then the end (the stop token, id 0)."""
    matcher = xgr.GrammarMatcher(grammar)
    return bool(matcher.accept_string(text)) and bool(matcher.accept_token(0))


def test_json_constraints_take_one_line_json_only(compiler: xgr.GrammarCompiler) -> None:
    schema = Constraint(ConstraintKind.JSON_SCHEMA, '{"type": "object"}')
    for grammar in (
        compile_constraint(compiler, schema),
        compile_constraint(compiler, Constraint(ConstraintKind.JSON_OBJECT)),
    ):
        assert _accepts(grammar, '{"a": 1, "b": [1, 2]}')
        assert not _accepts(grammar, '{\n  "a": 1\n}')
