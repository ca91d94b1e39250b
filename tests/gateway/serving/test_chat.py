"""Request handling over a live gateway on the synthetic engine: limits, errors, faults."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

MODEL = "SmolLM2-135M-Instruct"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]


def post(server: LiveServer, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, object] = body["error"]
    return error


def prompt_tokens(server: LiveServer) -> int:
    response = post(server, {"model": MODEL, "messages": MESSAGES, "max_tokens": 1})
    tokens: int = response.json()["usage"]["prompt_tokens"]
    return tokens


def test_missing_max_tokens_is_clamped_to_the_context_left(
    synthetic_gateway: LiveServer,
) -> None:
    room = 512 - prompt_tokens(synthetic_gateway)
    body = post(synthetic_gateway, {"model": MODEL, "messages": MESSAGES}).json()
    assert body["usage"]["completion_tokens"] == room
    assert body["choices"][0]["finish_reason"] == "length"


def test_too_large_max_tokens_is_clamped(synthetic_gateway: LiveServer) -> None:
    room = 512 - prompt_tokens(synthetic_gateway)
    body = post(
        synthetic_gateway, {"model": MODEL, "messages": MESSAGES, "max_tokens": 65535}
    ).json()
    assert body["usage"]["completion_tokens"] == room
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.fixture(scope="module")
def strict_gateway() -> Iterator[LiveServer]:
    yield from serve(
        Settings(
            engine="synthetic",
            strict_max_tokens=True,
            synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=512),
        )
    )


def test_strict_mode_rejects_too_large_max_tokens(strict_gateway: LiveServer) -> None:
    response = post(strict_gateway, {"model": MODEL, "messages": MESSAGES, "max_tokens": 600})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "max_tokens"
    assert str(error["message"]).startswith(
        "'max_tokens' or 'max_completion_tokens' is too large: 600."
    )


def test_deprecated_functions_are_refused_by_name(synthetic_gateway: LiveServer) -> None:
    functions = [{"name": "f", "parameters": {"type": "object"}}]
    response = post(
        synthetic_gateway, {"model": MODEL, "messages": MESSAGES, "functions": functions}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"]) == ("functions", "unsupported_parameter")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"n": 17}, "n"),
        ({"logit_bias": {"49152": 1}}, "logit_bias"),
        ({"stop_token_ids": [10**6]}, "stop_token_ids"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
        ),
    ],
)
def test_fields_that_cannot_be_honoured_are_400s(
    synthetic_gateway: LiveServer, fields: dict[str, object], param: str
) -> None:
    response = post(synthetic_gateway, {"model": MODEL, "messages": MESSAGES, **fields})
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL}, "messages"),
        ({"messages": MESSAGES}, "model"),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": None}]}, "messages"),
        ({"model": MODEL, "messages": [{"role": "tool", "tool_call_id": "c"}]}, "messages"),
        ({"model": MODEL, "messages": MESSAGES, "stop": ""}, "stop"),
        ({"model": MODEL, "messages": MESSAGES, "stop": ["x"] * 17}, "stop"),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ],
            },
            "messages.0.content",
        ),
    ],
)
def test_invalid_requests_are_400_naming_the_field(
    synthetic_gateway: LiveServer, body: object, param: str
) -> None:
    response = post(synthetic_gateway, body)
    assert response.status_code == 400
    assert error_of(response)["param"] == param


def test_a_message_without_content_says_so(synthetic_gateway: LiveServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": None}]}
    assert error_of(post(synthetic_gateway, body))["message"] == "a user message needs 'content'"
    calls_only = {
        "role": "assistant",
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
    }
    answered = [*MESSAGES, calls_only, {"role": "tool", "tool_call_id": "c", "content": "ok"}]
    response = post(synthetic_gateway, {"model": MODEL, "messages": answered, "max_tokens": 1})
    assert response.status_code == 200  # an assistant's turn may be calls alone


def test_malformed_json_is_400(synthetic_gateway: LiveServer) -> None:
    response = httpx.post(
        f"{synthetic_gateway.url}/v1/chat/completions",
        content=b'{"model": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_unknown_route_and_method_use_the_error_shape(synthetic_gateway: LiveServer) -> None:
    missing = httpx.get(f"{synthetic_gateway.url}/v1/nothing")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    wrong = httpx.get(f"{synthetic_gateway.url}/v1/chat/completions")
    assert wrong.status_code == 405
    assert error_of(wrong)["code"] == "method_not_allowed"


def test_unknown_fields_and_stream_options_without_stream_are_accepted(
    synthetic_gateway: LiveServer,
) -> None:
    response = post(
        synthetic_gateway,
        {
            "model": MODEL,
            "messages": MESSAGES,
            "max_tokens": 2,
            "stream_options": {"include_usage": True},
            "some_vendor_field": {"x": 1},
            "user": "someone",
            "seed": 7,
        },
    )
    assert response.status_code == 200
    assert "usage" in response.json()


def test_text_content_parts_are_joined(synthetic_gateway: LiveServer) -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    as_parts = post(
        synthetic_gateway,
        {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 1},
    )
    assert as_parts.json()["usage"]["prompt_tokens"] == prompt_tokens(synthetic_gateway)


def test_client_disconnect_aborts_the_request_in_the_engine(
    synthetic_gateway: LiveServer,
) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{synthetic_gateway.url}/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert synthetic_gateway.metric("gateway_num_requests_running") == 1
    synthetic_gateway.wait_idle(5, "the engine kept generating for a gone client")
    assert synthetic_gateway.metric("gateway_kv_cache_usage_perc") == 0


@pytest.fixture(scope="module")
def failing_gateway() -> Iterator[LiveServer]:
    settings = SyntheticSettings(token_seconds=0.001, max_seq_len=512, fail_every_nth_request=1)
    yield from serve(Settings(engine="synthetic", synthetic=settings))


def test_request_failure_is_500_when_not_streaming(failing_gateway: LiveServer) -> None:
    response = post(failing_gateway, {"model": MODEL, "messages": MESSAGES, "max_tokens": 5})
    assert response.status_code == 500
    assert error_of(response)["code"] == "engine_error"


def test_request_failure_ends_the_stream_with_an_error_event(
    failing_gateway: LiveServer,
) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{failing_gateway.url}/v1/chat/completions", json=body) as r:
        payloads = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["code"] == "engine_error"
    with pytest.raises(openai.APIError):
        sdk = openai.OpenAI(base_url=f"{failing_gateway.url}/v1", api_key="x", max_retries=0)
        for _ in sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass


@pytest.fixture
def dying_gateway() -> Iterator[LiveServer]:
    settings = SyntheticSettings(token_seconds=0.001, max_seq_len=512, fail_engine_after_tokens=3)
    yield from serve(Settings(engine="synthetic", synthetic=settings))


def test_engine_death_turns_ready_and_requests_to_503(dying_gateway: LiveServer) -> None:
    first = post(dying_gateway, {"model": MODEL, "messages": MESSAGES, "max_tokens": 10})
    assert first.status_code == 503
    assert error_of(first)["type"] == "service_unavailable"
    assert httpx.get(f"{dying_gateway.url}/ready").status_code == 503
    assert httpx.get(f"{dying_gateway.url}/health").status_code == 503
    second = post(dying_gateway, {"model": MODEL, "messages": MESSAGES, "max_tokens": 10})
    assert second.status_code == 503


def test_a_non_streaming_client_that_hangs_up_is_aborted(synthetic_gateway: LiveServer) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 500}
    with pytest.raises(httpx.ReadTimeout):
        # 500 engine steps take over a second: the client gives up long before.
        httpx.post(f"{synthetic_gateway.url}/v1/chat/completions", json=body, timeout=0.2)
    synthetic_gateway.wait_idle(5, "the engine kept generating for a gone client")
    statuses = httpx.get(f"{synthetic_gateway.url}/metrics").text
    assert 'route="/v1/chat/completions",status="499"' in statuses


@pytest.fixture(scope="module")
def plain_template_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    template = tmp_path_factory.mktemp("template") / "plain.jinja"
    template.write_text(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
    )
    settings = Settings(
        engine="synthetic",
        chat_template=template,
        synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=512),
    )
    yield from serve(settings)


def test_a_configured_chat_template_replaces_the_models(
    synthetic_gateway: LiveServer, plain_template_gateway: LiveServer
) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1}
    plain = post(plain_template_gateway, body).json()["usage"]["prompt_tokens"]
    # "user: Hello there\nassistant:" is a handful of tokens; ChatML with its
    # default system prompt is over thirty.
    assert plain < 10 < prompt_tokens(synthetic_gateway)


@pytest.fixture(scope="module")
def thinking_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A template that opens the model's <think> block, as thinking models' templates do."""
    template = tmp_path_factory.mktemp("template") / "thinking.jinja"
    template.write_text(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant: <think>"
    )
    settings = Settings(
        engine="synthetic",
        chat_template=template,
        reasoning_parser="think",
        synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=512),
    )
    yield from serve(settings)


def test_output_inside_an_opened_think_block_is_reasoning(thinking_gateway: LiveServer) -> None:
    sdk = openai.OpenAI(base_url=f"{thinking_gateway.url}/v1", api_key="unused")
    whole = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    message = whole.choices[0].message.model_dump()
    assert message["content"] is None or message["content"] == ""
    assert message["reasoning_content"]
    stream = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, stream=True)
    deltas = [chunk.choices[0].delta.model_dump() for chunk in stream]
    # Every delta names reasoning_content, so clients can read it as an attribute.
    assert all("reasoning_content" in delta for delta in deltas)
    streamed = "".join(delta["reasoning_content"] or "" for delta in deltas[1:])
    assert streamed == message["reasoning_content"]
