"""X-Request-Id and the JSON access log, over live gateways on the synthetic engine."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from engines.base import GenerationRequest, Sink
from engines.settings import SyntheticSettings
from engines.synthetic import SyntheticEngine
from gateway import cli
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

MODEL = "SmolLM2-135M-Instruct"
SECRET = "PROMPT-TEXT-THAT-MUST-NOT-BE-LOGGED"
KEY = "access-log-key"
FAST = SyntheticSettings(token_seconds=0.001, max_seq_len=512)
FIELDS = {"time", "request_id", "method", "path", "status", "duration_ms", "bytes_sent"}
FIELDS |= {"client", "user_agent"}


def messages(text: str = "Hello there") -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def chat(server: LiveServer, **kwargs: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": messages(), "max_tokens": 3}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def keyed_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=FAST, api_keys=[SecretStr(KEY)]))


@pytest.fixture(scope="module")
def unlogged_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=FAST, access_log=False))


@pytest.fixture
def engine_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The request ids the synthetic engine receives, in order."""
    seen: list[str] = []
    open_request = SyntheticEngine.open

    async def recording(
        self: SyntheticEngine, request: GenerationRequest, sink: Sink
    ) -> Callable[[], None]:
        seen.append(request.request_id)
        return await open_request(self, request, sink)

    monkeypatch.setattr(SyntheticEngine, "open", recording)
    return seen


def test_a_valid_client_id_is_echoed_and_reaches_the_engine(
    synthetic_gateway: LiveServer, engine_ids: list[str]
) -> None:
    client_id = "req 42/retry-1:" + "x" * 113  # printable ASCII, 128 characters
    response = chat(synthetic_gateway, headers={"X-Request-Id": client_id})
    assert response.headers["x-request-id"] == client_id
    [engine_id] = engine_ids
    assert re.fullmatch(re.escape(client_id) + r"-\d+", engine_id)
    # The body's id stays the gateway's own: no client text in it.
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", response.json()["id"])


@pytest.mark.parametrize(
    "given",
    [None, "x" * 129, "tab\tinside", "caf\xe9", ""],
    ids=["none", "too-long", "control", "non-ascii", "empty"],
)
def test_a_missing_or_invalid_id_is_replaced(
    synthetic_gateway: LiveServer, engine_ids: list[str], given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-Id": given.encode("latin-1")}
    response = chat(synthetic_gateway, headers=headers)
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert engine_ids[0].startswith(f"{generated}-")
    assert chat(synthetic_gateway, headers=headers).headers["x-request-id"] != generated


async def test_a_reused_id_still_reaches_the_engine_as_distinct_requests(
    synthetic_gateway: LiveServer, engine_ids: list[str]
) -> None:
    """Retries reuse X-Request-Id; the engine keys live requests by id."""
    async with openai.AsyncOpenAI(
        base_url=f"{synthetic_gateway.url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=10,
        default_headers={"X-Request-Id": "retry-me"},
    ) as sdk:
        completions = await asyncio.gather(
            *[
                sdk.chat.completions.create(model=MODEL, messages=messages(), max_tokens=50)
                for _ in range(4)
            ]
        )
    assert [c.usage.completion_tokens for c in completions if c.usage] == [50] * 4
    assert len(set(engine_ids)) == 4
    assert all(engine_id.startswith("retry-me-") for engine_id in engine_ids)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/models", 401), ("/v1/nothing", 401), ("/health", 200)],
)
def test_every_response_carries_an_id(keyed_gateway: LiveServer, path: str, status: int) -> None:
    response = httpx.get(keyed_gateway.url + path, headers={"X-Request-Id": "mine"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "mine"


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    """The access log's lines for `request_id`, waiting for the one written after the response."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            json.loads(record.getMessage())
            for record in caplog.records
            if record.name == "gateway.access"
        ]
        mine = [line for line in lines if line["request_id"] == request_id]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.01)


def content_of(response: httpx.Response, stream: bool) -> str:
    if not stream:
        content: str = response.json()["choices"][0]["message"]["content"]
        return content
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line[6:7] == "{"]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


@pytest.mark.parametrize("stream", [False, True])
def test_one_json_line_per_request_without_prompt_output_or_key(
    keyed_gateway: LiveServer, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO)
    body = {"model": MODEL, "messages": messages(SECRET), "max_tokens": 5, "stream": stream}
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-Id": "logged", "User-Agent": "t/1"}
    response = httpx.post(f"{keyed_gateway.url}/v1/chat/completions", json=body, headers=headers)
    [line] = access_lines(caplog, "logged")
    assert set(line) == FIELDS
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/chat/completions", 200)
    assert line["bytes_sent"] == len(response.content)
    assert line["client"] == "127.0.0.1"
    assert line["user_agent"] == "t/1"
    assert 0 < line["duration_ms"] < 30_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    output = content_of(response, stream)
    assert len(output) > 5
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (SECRET, KEY, output):
        assert secret not in logged


def test_refused_requests_are_logged_too(
    keyed_gateway: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    httpx.get(f"{keyed_gateway.url}/v1/models", headers={"X-Request-Id": "refused"})
    [line] = access_lines(caplog, "refused")
    assert (line["status"], line["user_agent"]) == (401, f"python-httpx/{httpx.__version__}")


def test_an_unhandled_error_is_a_500_with_the_id_and_logged(
    synthetic_gateway: LiveServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: SyntheticEngine) -> None:
        raise RuntimeError("a bug")

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(SyntheticEngine, "limits", broken)
    response = chat(synthetic_gateway, headers={"X-Request-Id": "crashed"})
    assert (response.status_code, response.headers["x-request-id"]) == (500, "crashed")
    assert response.headers.get_list("x-request-id") == ["crashed"]
    [line] = access_lines(caplog, "crashed")
    assert line["status"] == 500


def test_the_access_log_can_be_turned_off(
    unlogged_gateway: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    chat(unlogged_gateway, headers={"X-Request-Id": "quiet"})
    assert chat(unlogged_gateway).headers["x-request-id"]  # ids stay on
    assert access_lines(caplog, "quiet") == []


class _Captured(Exception):
    """What the fake server raises instead of serving."""


@pytest.mark.parametrize(("access_log", "uvicorns"), [("true", False), ("false", True)])
def test_the_cli_turns_uvicorns_access_log_off_for_ours(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    access_log: str,
    uvicorns: bool,
) -> None:
    configs: list[uvicorn.Config] = []

    def capture(self: uvicorn.Server, sockets: object = None) -> None:
        configs.append(self.config)
        raise _Captured

    caplog.set_level(logging.DEBUG)
    access = logging.getLogger("gateway.access")
    monkeypatch.setattr(access, "handlers", [])
    monkeypatch.setattr(access, "propagate", True)
    monkeypatch.setattr(cli._DrainingServer, "run", capture)
    monkeypatch.setenv("GATEWAY_ACCESS_LOG", access_log)
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "debug")
    with pytest.raises(_Captured):
        cli.main(["serve", "--engine", "synthetic"])
    assert configs[0].access_log is uvicorns
    assert access.propagate is uvicorns  # ours: bare JSON lines of their own
