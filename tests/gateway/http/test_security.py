"""API keys, the body limit and CORS, over live gateways on the synthetic engine."""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from engines.settings import SyntheticSettings
from gateway.config_errors import ConfigError
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

MODEL = "SmolLM2-135M-Instruct"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]
ENV_KEYS = ("env-key-one", "env-key-two")
FILE_KEY = "file-key"
FAST = SyntheticSettings(token_seconds=0.001, max_seq_len=512)
ORIGIN = "https://app.example"

# Every route that needs a key, unknown ones and the generated docs included.
KEYED_ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/no-such-route"),
    ("DELETE", "/v1/models"),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(**fields: object) -> dict[str, object]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, **fields}


def keyed_settings(key_file: Path, **fields: Any) -> Settings:
    """Keys from GATEWAY_API_KEYS and from a key file, as a deployment sets them."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GATEWAY_API_KEYS", f'["{ENV_KEYS[0]}", "{ENV_KEYS[1]}"]')
        return Settings.load(engine="synthetic", api_key_file=key_file, synthetic=FAST, **fields)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"# rotated monthly\n\n  {FILE_KEY}  \n# old-key\n")
    return path


@pytest.fixture(scope="module")
def keyed_gateway(key_file: Path) -> Iterator[LiveServer]:
    yield from serve(keyed_settings(key_file))


@pytest.fixture(scope="module")
def open_metrics_gateway(key_file: Path) -> Iterator[LiveServer]:
    yield from serve(keyed_settings(key_file, metrics_require_key=False))


@pytest.fixture(scope="module")
def cors_gateway(key_file: Path) -> Iterator[LiveServer]:
    yield from serve(keyed_settings(key_file, cors_allow_origins=[ORIGIN]))


@pytest.fixture(scope="module")
def small_body_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=FAST, max_body_bytes=4096))


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-key"),
        {"Authorization": "Bearer"},
        {"Authorization": ENV_KEYS[0]},
        bearer(FILE_KEY + "x"),
    ],
    ids=["none", "wrong", "empty", "no-scheme", "prefix"],
)
def test_a_missing_or_wrong_key_is_401_on_every_route(
    keyed_gateway: LiveServer, method: str, path: str, headers: dict[str, str]
) -> None:
    response = httpx.request(method, keyed_gateway.url + path, headers=headers, json=chat_body())
    assert_unauthorized(response)


def test_an_unknown_route_is_404_only_with_a_key(keyed_gateway: LiveServer) -> None:
    url = f"{keyed_gateway.url}/v1/no-such-route"
    assert httpx.get(url, headers=bearer(FILE_KEY)).status_code == 404


@pytest.mark.parametrize("key", [*ENV_KEYS, FILE_KEY])
def test_every_configured_key_works_with_the_sdk(keyed_gateway: LiveServer, key: str) -> None:
    sdk = openai.OpenAI(base_url=f"{keyed_gateway.url}/v1", api_key=key, max_retries=0)
    assert [model.id for model in sdk.models.list()] == [MODEL]
    completion = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_the_sdk_sees_a_wrong_key_as_an_authentication_error(keyed_gateway: LiveServer) -> None:
    sdk = openai.OpenAI(base_url=f"{keyed_gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)


@pytest.mark.parametrize("key", [ENV_KEYS[1], FILE_KEY])
def test_the_anthropic_sdk_sends_its_key_as_x_api_key(keyed_gateway: LiveServer, key: str) -> None:
    sdk = anthropic.Anthropic(base_url=keyed_gateway.url, api_key=key, max_retries=0)
    message = sdk.messages.create(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.usage.output_tokens == 2


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}], ids=["none", "wrong"])
def test_a_401_on_anthropics_routes_takes_anthropics_shape(
    keyed_gateway: LiveServer, headers: dict[str, str]
) -> None:
    body = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{keyed_gateway.url}/v1/messages", headers=headers, json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"
    sdk = anthropic.Anthropic(base_url=keyed_gateway.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_the_scheme_is_case_insensitive(keyed_gateway: LiveServer) -> None:
    headers = {"Authorization": f"bearer {FILE_KEY}"}
    assert httpx.get(f"{keyed_gateway.url}/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_probes_need_no_key(keyed_gateway: LiveServer, path: str) -> None:
    assert httpx.get(keyed_gateway.url + path).status_code == 200


def test_metrics_need_a_key_unless_configured_open(
    keyed_gateway: LiveServer, open_metrics_gateway: LiveServer
) -> None:
    assert_unauthorized(httpx.get(f"{keyed_gateway.url}/metrics"))
    assert httpx.get(f"{keyed_gateway.url}/metrics", headers=bearer(FILE_KEY)).status_code == 200
    assert httpx.get(f"{open_metrics_gateway.url}/metrics").status_code == 200
    assert_unauthorized(httpx.get(f"{open_metrics_gateway.url}/v1/models"))


def test_keys_are_compared_as_digests_with_every_key(
    keyed_gateway: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit on a match, and equal-length digests: timing reveals nothing."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for key in (ENV_KEYS[0], "wrong-key-of-another-length"):
        compared.clear()
        httpx.get(f"{keyed_gateway.url}/v1/models", headers=bearer(key))
        assert len(compared) == 3  # the first key matched, and the other two were still compared
        assert {len(a) for pair in compared for a in pair} == {32}


def test_no_keys_means_no_authentication(synthetic_gateway: LiveServer) -> None:
    assert httpx.get(f"{synthetic_gateway.url}/v1/models").status_code == 200


def test_a_missing_key_file_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="api_key_file"):
        create_app(Settings(engine="synthetic", api_key_file=missing))


def test_a_key_file_without_keys_stops_the_start(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="no key"):
        create_app(Settings(engine="synthetic", api_key_file=empty))


def test_an_empty_key_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="empty key"):
        create_app(Settings(engine="synthetic", api_keys=[SecretStr("good"), SecretStr(" ")]))


@pytest.mark.parametrize(
    ("host", "keys", "warned"),
    [
        ("0.0.0.0", [], True),
        ("gateway.internal", [], True),
        ("0.0.0.0", ["k"], False),
        ("127.0.0.1", [], False),
        ("::1", [], False),
        ("localhost", [], False),
    ],
)
def test_serving_beyond_loopback_without_keys_warns(
    caplog: pytest.LogCaptureFixture, host: str, keys: list[str], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.http.security"):
        create_app(Settings(engine="synthetic", host=host, api_keys=keys))  # type: ignore[arg-type]
    assert any("no API keys" in r.getMessage() for r in caplog.records) == warned


def test_a_declared_body_over_the_limit_is_413(small_body_gateway: LiveServer) -> None:
    body = chat_body(user="x" * 5000)
    response = httpx.post(f"{small_body_gateway.url}/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["x-request-id"]


def test_a_body_of_exactly_the_limit_passes(small_body_gateway: LiveServer) -> None:
    content = httpx.Request("POST", "/", json=chat_body()).content
    padded = content + b" " * (4096 - len(content))
    response = httpx.post(
        f"{small_body_gateway.url}/v1/chat/completions",
        content=padded,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200


def chunked(payload: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_a_chunked_body_over_the_limit_is_413(small_body_gateway: LiveServer) -> None:
    payload = httpx.Request("POST", "/", json=chat_body(user="x" * 5000)).content
    response = httpx.post(
        f"{small_body_gateway.url}/v1/chat/completions",
        content=chunked(payload),
        headers={"content-type": "application/json"},
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_chunked_body_under_the_limit_passes(small_body_gateway: LiveServer) -> None:
    payload = httpx.Request("POST", "/", json=chat_body()).content
    response = httpx.post(
        f"{small_body_gateway.url}/v1/chat/completions",
        content=chunked(payload, 16),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200


def raw_exchange(server: LiveServer, head: bytes, body: bytes) -> bytes:
    """Sends `head` and part of a body, never the rest: the answer must not wait for it."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head + body)
        return conn.recv(65536)


def test_a_huge_declared_body_is_refused_before_it_is_read(
    small_body_gateway: LiveServer,
) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 10000000000\r\n\r\n"
    )
    assert raw_exchange(small_body_gateway, head, b'{"model": ').startswith(b"HTTP/1.1 413")


def test_an_endless_chunked_body_is_refused_at_the_limit(small_body_gateway: LiveServer) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"400\r\n" + b" " * 0x400 + b"\r\n" for _ in range(5))  # 5 KiB, no end
    assert raw_exchange(small_body_gateway, head, chunks).startswith(b"HTTP/1.1 413")


def test_cors_is_off_by_default(synthetic_gateway: LiveServer) -> None:
    url = f"{synthetic_gateway.url}/v1/chat/completions"
    preflight = httpx.options(url, headers=preflight_headers())
    assert not [h for h in preflight.headers if h.startswith("access-control-")]
    response = httpx.post(url, json=chat_body(), headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("access-control-")]


def preflight_headers(origin: str = ORIGIN) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang",
    }


def test_a_preflight_from_an_allowed_origin_needs_no_key(cors_gateway: LiveServer) -> None:
    url = f"{cors_gateway.url}/v1/chat/completions"
    preflight = httpx.options(url, headers=preflight_headers())
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = httpx.options(url, headers=preflight_headers("https://evil.example"))
    assert "access-control-allow-origin" not in refused.headers


def test_cors_responses_expose_the_request_id_and_errors(cors_gateway: LiveServer) -> None:
    url = f"{cors_gateway.url}/v1/chat/completions"
    headers = {"Origin": ORIGIN, **bearer(FILE_KEY)}
    response = httpx.post(url, json=chat_body(), headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    denied = httpx.post(url, json=chat_body(), headers={"Origin": ORIGIN})
    assert_unauthorized(denied)
    assert denied.headers["access-control-allow-origin"] == ORIGIN  # the browser may read it


TRITON_BODY = {"text_input": "Hi", "max_tokens": 2, "bad_words": "", "stop_words": ""}


@pytest.mark.parametrize("kind", ["generate", "generate_stream"])
def test_a_401_on_tritons_routes_takes_tritons_shape(keyed_gateway: LiveServer, kind: str) -> None:
    url = f"{keyed_gateway.url}/v2/models/ensemble/versions/1/{kind}"
    response = httpx.post(url, json=TRITON_BODY)
    assert (response.status_code, response.json()) == (
        401,
        {"error": "a valid API key is required"},
    )
    keyed = httpx.post(url, json=TRITON_BODY, headers=bearer(FILE_KEY))
    assert keyed.status_code == 200


def test_a_413_on_tritons_routes_takes_tritons_shape(small_body_gateway: LiveServer) -> None:
    payload = httpx.Request("POST", "/", json=TRITON_BODY | {"text_input": "x" * 5000}).content
    url = f"{small_body_gateway.url}/v2/models/ensemble/generate"
    declared = httpx.post(url, content=payload, headers={"content-type": "application/json"})
    streamed = httpx.post(
        url, content=chunked(payload), headers={"content-type": "application/json"}
    )
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    for response in (declared, streamed):
        assert (response.status_code, response.json()) == (
            413,
            {"error": "the request body exceeds 4096 bytes"},
        )
