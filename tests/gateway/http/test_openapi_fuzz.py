"""Schemathesis over the gateway's own /openapi.json, against a live gateway.

Every operation gets schema-valid requests, and the ones that take a body also
get schema-invalid ones: none may answer 5xx, and every answer must be what the
document says (status, content type, body schema). Generation is derandomized
and bounded, so the run is the same on every machine and takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

MODEL = "SmolLM2-135M-Instruct"
KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
REFUSED = ["n", "logprobs", "top_logprobs", "tools", "tool_choice", "functions"]
REFUSED += ["response_format", "presence_penalty", "frequency_penalty", "logit_bias"]
EXAMPLES = 400  # per operation and mode: about 4 minutes in all on two cores (mostly generating
# the nested Anthropic bodies)


@pytest.fixture(scope="module")
def fuzzed_gateway() -> Iterator[LiveServer]:
    engine = SyntheticSettings(token_seconds=0, max_seq_len=256)
    yield from serve(Settings(engine="synthetic", synthetic=engine, api_keys=[SecretStr(KEY)]))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error_or_an_undocumented_answer(
    fuzzed_gateway: LiveServer, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json", headers=AUTH)
    operations = [schema[path][method] for path in schema for method in schema[path]]
    assert len(operations) == 14
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing in a request without parameters can be invalid

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Case[Any]) -> None:
            if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
                # Past the 404 of a random model and the 400s of the parameters the
                # gateway declares only to refuse (tests/gateway/serving/test_chat.py has them).
                case.body["model"] = MODEL
                for field in REFUSED:
                    case.body.pop(field, None)
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)

        run()


def test_the_document_says_400_for_invalid_requests_never_422(fuzzed_gateway: LiveServer) -> None:
    document = httpx.get(f"{fuzzed_gateway.url}/openapi.json", headers=AUTH).json()
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    anthropic = {"$ref": "#/components/schemas/AnthropicErrorBody"}
    assert chat["400"]["content"]["application/json"]["schema"] == error
    for name, path in document["paths"].items():
        shape = anthropic if name.startswith("/v1/messages") else error
        for operation in path.values():
            assert "422" not in operation["responses"]
            for status in ("400", "default") if shape is anthropic else ("default",):
                responses = operation["responses"][status]
                assert responses["content"]["application/json"]["schema"] == shape
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(
    "json_text",
    [
        '{"model": "M", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
        '{"model": "M", "messages": [{"role": "user", "content": [{"type": "text", '
        '"text": "\\udfff"}]}]}',
        '{"model": "Smol\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
        '{"model": "M", "messages": [{"role": "user", "content": "hi"}], "stop": "\\udbff"}',
    ],
)
def test_lone_surrogates_are_400(fuzzed_gateway: LiveServer, json_text: str) -> None:
    """What the fuzzer cannot send: JSON escapes of lone UTF-16 surrogates (they were 500s)."""
    response = httpx.post(
        f"{fuzzed_gateway.url}/v1/chat/completions",
        content=json_text.replace('"M"', f'"{MODEL}"'),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]


def test_405_names_the_allowed_methods(fuzzed_gateway: LiveServer) -> None:
    response = httpx.put(f"{fuzzed_gateway.url}/v1/models", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"
