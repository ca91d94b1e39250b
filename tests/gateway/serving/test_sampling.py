from __future__ import annotations

import json
from typing import Any

import pytest

from engines.base import Constraint, ConstraintKind, EngineLimits, SamplingParams
from gateway.errors import ContextLengthExceeded, InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest, ResponseFormat
from gateway.serving.sampling import response_constraint, sampling_params
from gateway.settings import Settings

LIMITS = EngineLimits(max_seq_len=100, max_input_len=99, max_batch_size=8)
EOS = frozenset({2})


def params(**fields: Any) -> SamplingParams:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )
    return sampling_params(
        body,
        10,
        limits=LIMITS,
        settings=Settings(),
        vocab_size=50,
        eos_token_ids=EOS,
        constraint=None,
    )


def test_defaults_are_plain_sampling_that_stops_at_eos() -> None:
    sampling = params()
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p) == (90, 1.0, 1.0)
    assert sampling.stop_token_ids == EOS
    assert (sampling.logprobs, sampling.logit_bias, sampling.constraint) == (None, (), None)


def test_vllm_extensions_reach_the_engine() -> None:
    sampling = params(
        stop_token_ids=[7],
        min_tokens=3,
        repetition_penalty=1.2,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"5": 100, "6": -100},
        logprobs=True,
        top_logprobs=3,
        seed=9,
    )
    assert sampling.stop_token_ids == {2, 7}
    assert (sampling.min_tokens, sampling.repetition_penalty) == (3, 1.2)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, -0.5)
    assert sampling.logit_bias == ((5, 100.0), (6, -100.0))
    assert (sampling.logprobs, sampling.seed) == (3, 9)


def test_ignore_eos_leaves_only_the_requested_stop_ids() -> None:
    assert params(ignore_eos=True, stop_token_ids=[7]).stop_token_ids == {7}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"50": 1}}, "logit_bias"),
        ({"logit_bias": {"the": 1}}, "logit_bias"),
        ({"stop_token_ids": [50]}, "stop_token_ids"),  # past the vocabulary (50)
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"min_tokens": 91}, "min_tokens"),
    ],
)
def test_fields_the_model_cannot_take_are_a_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        params(**fields)
    assert raised.value.param == param


def test_an_oversized_prompt_is_still_a_context_error() -> None:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    with pytest.raises(ContextLengthExceeded):
        sampling_params(
            body,
            100,
            limits=LIMITS,
            settings=Settings(),
            vocab_size=50,
            eos_token_ids=EOS,
            constraint=None,
        )


def test_response_formats_become_constraints() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_constraint(None) is None
    assert response_constraint(ResponseFormat(type="text")) is None
    assert response_constraint(ResponseFormat(type="json_object")) == Constraint(
        ConstraintKind.JSON_OBJECT
    )
    constraint = response_constraint(
        ResponseFormat(type="json_schema", json_schema={"name": "x", "schema": schema})
    )
    assert constraint is not None and constraint.kind is ConstraintKind.JSON_SCHEMA
    assert json.loads(constraint.spec) == schema
    assert response_constraint(ResponseFormat(type="regex", regex="[0-9]+")) == Constraint(
        ConstraintKind.REGEX, "[0-9]+"
    )


@pytest.mark.parametrize(
    "response_format",
    [
        ResponseFormat(type="json_schema", json_schema={"name": "x"}),
        ResponseFormat(type="json_schema", json_schema={"schema": {"type": "nonsense"}}),
        ResponseFormat(type="regex", regex="(unclosed"),
        ResponseFormat(type="grammar", grammar="root ::= undefined_rule"),
    ],
)
def test_a_format_no_grammar_engine_can_compile_is_a_400(response_format: ResponseFormat) -> None:
    with pytest.raises(InvalidRequest) as raised:
        response_constraint(response_format)
    assert raised.value.param == "response_format"


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "nonsense"}}},
            'Unsupported type "nonsense"',
        ),
        ({"type": "object", "required": 5}, "required must be an array"),
    ],
)
def test_an_invalid_schema_says_what_is_wrong_not_where_xgrammar_noticed(
    schema: dict[str, object], problem: str
) -> None:
    response_format = ResponseFormat(
        type="json_schema", json_schema={"name": "x", "schema": schema}
    )
    with pytest.raises(InvalidRequest) as caught:
        response_constraint(response_format)
    assert caught.value.message == f"'response_format' has an invalid JSON schema: {problem}"
