"""Anthropic's integer fields, range-checked like OpenAI's: a 400 in Anthropic's shape that
names the field, before the engine sees it."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer

BODY = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": 2**31}, "max_tokens: Input should be less than or equal to 2147483647"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        (
            {"max_tokens": 8, "top_k": 2**31},
            "top_k: Input should be less than or equal to 2147483647",
        ),
        ({"max_tokens": 8, "top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    ],
    ids=["max_tokens-high", "max_tokens-low", "top_k-high", "top_k-low"],
)
def test_an_integer_out_of_range_is_a_400_naming_its_field(
    synthetic_gateway: LiveServer, fields: dict[str, int], message: str
) -> None:
    response = httpx.post(f"{synthetic_gateway.url}/v1/messages", json=BODY | fields)
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }


@pytest.mark.parametrize("field", ["max_tokens", "top_k"])
def test_a_huge_integer_is_a_400_naming_its_field(
    synthetic_gateway: LiveServer, field: str
) -> None:
    response = httpx.post(
        f"{synthetic_gateway.url}/v1/messages", json=BODY | {"max_tokens": 8, field: 2**70}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}: ")
