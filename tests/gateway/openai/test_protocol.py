"""Every integer field of a request is range-checked before the engine sees it: a value
past what engines take (32-bit counts and token ids, a 64-bit seed) is a 400 naming the
field, never an engine's 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"
HUGE = 2**70  # past every integer type; orjson reads it as a float
PAST_INT32 = 2**31
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
TEXT: dict[str, Any] = {"model": MODEL, "prompt": "hi"}

INT32 = "Input should be less than or equal to 2147483647"
PROMPT_MESSAGE = (
    "'prompt' must be a string, a list of strings, a list of token ids (0..2147483647) "
    "or a list of such lists"
)
CASES = [
    (
        "/v1/chat/completions",
        CHAT | {"max_tokens": PAST_INT32},
        "max_tokens",
        "max_tokens: " + INT32,
    ),
    (
        "/v1/chat/completions",
        CHAT | {"max_completion_tokens": PAST_INT32},
        "max_completion_tokens",
        "max_completion_tokens: " + INT32,
    ),
    ("/v1/chat/completions", CHAT | {"n": PAST_INT32}, "n", "n: " + INT32),
    ("/v1/chat/completions", CHAT | {"top_k": PAST_INT32}, "top_k", "top_k: " + INT32),
    (
        "/v1/chat/completions",
        CHAT | {"min_tokens": PAST_INT32},
        "min_tokens",
        "min_tokens: " + INT32,
    ),
    (
        "/v1/chat/completions",
        CHAT | {"logprobs": True, "top_logprobs": PAST_INT32},
        "top_logprobs",
        "top_logprobs: " + INT32,
    ),
    (
        "/v1/chat/completions",
        CHAT | {"stop_token_ids": [2, PAST_INT32]},
        "stop_token_ids.1",
        "stop_token_ids.1: " + INT32,
    ),
    (
        "/v1/chat/completions",
        CHAT | {"logit_bias": {str(HUGE): 1}},
        "logit_bias",
        f"token id {HUGE} in 'logit_bias' is outside the vocabulary (0..49151)",
    ),
    (
        "/v1/chat/completions",
        CHAT | {"logit_bias": {"1": HUGE}},
        "logit_bias.1",
        "logit_bias.1: Input should be less than or equal to 100",
    ),
    ("/v1/completions", TEXT | {"max_tokens": PAST_INT32}, "max_tokens", "max_tokens: " + INT32),
    ("/v1/completions", TEXT | {"n": PAST_INT32}, "n", "n: " + INT32),
    ("/v1/completions", TEXT | {"logprobs": PAST_INT32}, "logprobs", "logprobs: " + INT32),
    ("/v1/completions", TEXT | {"best_of": PAST_INT32}, "best_of", "best_of: " + INT32),
    ("/v1/completions", TEXT | {"prompt": [1, PAST_INT32]}, "prompt", PROMPT_MESSAGE),
    ("/v1/completions", TEXT | {"prompt": [[1], [1, HUGE]]}, "prompt", PROMPT_MESSAGE),
    ("/v1/completions", TEXT | {"prompt": [1, -1]}, "prompt", PROMPT_MESSAGE),
    ("/detokenize", {"tokens": [PAST_INT32]}, "tokens.0", "tokens.0: " + INT32),
]


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    CASES,
    ids=[f"{path.rsplit('/', 1)[-1]}-{param}-{i}" for i, (path, _, param, _) in enumerate(CASES)],
)
def test_an_integer_out_of_range_is_a_400_naming_its_field(
    synthetic_gateway: LiveServer, path: str, body: dict[str, Any], param: str, message: str
) -> None:
    response = httpx.post(synthetic_gateway.url + path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert error["message"] == message


@pytest.mark.parametrize("field", ["max_tokens", "n", "top_k", "min_tokens"])
def test_a_huge_integer_is_a_400_naming_its_field(
    synthetic_gateway: LiveServer, field: str
) -> None:
    """orjson reads integers past 64 bits as floats: still the field's own 400."""
    response = httpx.post(f"{synthetic_gateway.url}/v1/chat/completions", json=CHAT | {field: HUGE})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
