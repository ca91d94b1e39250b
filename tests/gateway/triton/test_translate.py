"""The generate request's inputs, checked, and translated onto a text completion."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.triton.protocol import GenerateRequest
from gateway.triton.translate import completion_request

MODEL = "served-model"
BASE: dict[str, Any] = {"text_input": "Hi", "max_tokens": 8, "bad_words": "", "stop_words": ""}


def request(**fields: Any) -> GenerateRequest:
    return GenerateRequest.model_validate(BASE | fields)


def translated(**fields: Any) -> dict[str, Any]:
    body = request(**fields)
    body.reject_unsupported()
    completion = completion_request(body, MODEL, stream=body.stream)
    return completion.model_dump(exclude_unset=True)


def test_the_issues_body_is_a_greedy_completion_of_the_raw_prompt() -> None:
    assert translated(stream=False) == {
        "model": MODEL,
        "prompt": "Hi",
        "max_tokens": 8,
        "stream": False,
        "include_stop_str_in_output": True,
        "temperature": 0.0,
        "top_k": 0,
    }


def test_sampling_inputs_carry_over_and_top_k_or_top_p_sample() -> None:
    fields = translated(
        temperature=0.7,
        top_k=40,
        top_p=0.9,
        repetition_penalty=1.1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        random_seed=7,
        min_length=2,
    )
    assert {k: fields[k] for k in fields if k not in ("model", "prompt", "max_tokens")} == {
        "stream": False,
        "include_stop_str_in_output": True,
        "temperature": 0.7,
        "top_k": 40,
        "top_p": 0.9,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 7,
        "min_tokens": 2,
    }
    assert translated(top_p=0.5, temperature=0.3)["temperature"] == 0.3


def test_a_uint64_seed_keeps_its_64_bits_as_an_int64() -> None:
    assert translated(seed=2**64 - 1)["seed"] == -1
    assert translated(seed=2**63)["seed"] == -(2**63)
    with pytest.raises(pydantic.ValidationError):
        request(seed=2**64)


def test_stop_words_are_a_string_or_a_list_and_stay_in_the_output() -> None:
    assert translated(stop_words="foo")["stop"] == ["foo"]
    assert translated(stop_words=["a b", "", "c"])["stop"] == ["a b", "c"]
    assert "stop" not in translated(stop_words=[])


def test_end_id_replaces_the_end_token_and_minus_one_removes_it() -> None:
    five = translated(end_id=5)
    assert (five["ignore_eos"], five["stop_token_ids"]) == (True, [5])
    minus_one = translated(end_id=-1)
    assert minus_one["ignore_eos"] is True and "stop_token_ids" not in minus_one


def test_return_log_probs_asks_for_the_chosen_tokens_logprobs() -> None:
    assert translated(return_log_probs=True)["logprobs"] == 0


def test_one_element_lists_are_scalars_as_triton_tensors_of_shape_1() -> None:
    body = request(max_tokens=[3], text_input=["Yo"], stream=[True], stop_words=["x"])
    assert (body.max_tokens, body.text_input, body.stream, body.stop_strings) == (
        3,
        "Yo",
        True,
        ["x"],
    )


def test_an_unknown_input_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedParameter) as raised:
        request(guided_decoding_guide="x")
    assert raised.value.param == "guided_decoding_guide"
    assert raised.value.message.startswith("unsupported input 'guided_decoding_guide'; ")


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"beam_width": 2},
            "beam_width",
            "beam_width 2 is not supported: beam search is not implemented, "
            "only beam_width 1 (sampling or greedy)",
        ),
        (
            {"num_return_sequences": 2},
            "num_return_sequences",
            "num_return_sequences above 1 is not supported",
        ),
        ({"bad_words": ["x"]}, "bad_words", "bad_words is not supported"),
        (
            {"return_context_logits": True},
            "return_context_logits",
            "return_context_logits is not supported",
        ),
        (
            {"parameters": {"temperature": 0}},
            "parameters",
            "request 'parameters' are not supported: "
            "send the ensemble's inputs as top-level fields",
        ),
        ({"seed": 1, "random_seed": 2}, "seed", "give 'seed' or 'random_seed', not both"),
    ],
)
def test_what_the_ensemble_does_and_the_gateway_cannot_is_a_400(
    fields: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request(**fields).reject_unsupported()
    assert (raised.value.status_code, raised.value.param, raised.value.message) == (
        400,
        param,
        message,
    )


def test_inputs_that_change_nothing_for_one_sequence_are_accepted() -> None:
    request(beam_width=1, pad_id=2, length_penalty=1.0, parameters={}).reject_unsupported()
