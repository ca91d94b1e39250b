"""Deadlines and the drain, on a live gateway over the synthetic engine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

MODEL = "SmolLM2-135M-Instruct"
SLOW = SyntheticSettings(token_seconds=0.02, max_seq_len=4096)


def body(max_tokens: int, stream: bool) -> dict[str, object]:
    messages = [{"role": "user", "content": "hi"}]
    return {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "stream": stream}


def stream_payloads(server: LiveServer, max_tokens: int) -> list[str]:
    url = f"{server.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body(max_tokens, True), timeout=30) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.fixture(scope="module")
def deadline_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=SLOW, request_timeout_seconds=0.3))


def test_a_request_past_its_deadline_is_504(deadline_gateway: LiveServer) -> None:
    started = time.monotonic()
    response = httpx.post(f"{deadline_gateway.url}/v1/chat/completions", json=body(500, False))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 2
    assert deadline_gateway.metric("gateway_num_requests_running") == 0


def test_a_stream_past_its_deadline_ends_with_an_error_event(
    deadline_gateway: LiveServer,
) -> None:
    payloads = stream_payloads(deadline_gateway, 500)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["code"] == "request_timeout"
    assert 3 < len(payloads) < 40  # some tokens, then the deadline


@pytest.fixture
def draining_gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=SLOW, shutdown_grace_seconds=0.5))


def test_drain_refuses_new_work_and_ends_the_rest_after_the_grace(
    draining_gateway: LiveServer,
) -> None:
    results: dict[str, list[str]] = {}
    runs = {
        "short": threading.Thread(target=lambda: results.update(short=stream_payloads(
            draining_gateway, 10))),
        "long": threading.Thread(target=lambda: results.update(long=stream_payloads(
            draining_gateway, 1000))),
    }  # fmt: skip
    with httpx.Client(base_url=draining_gateway.url) as kept_alive:
        assert kept_alive.get("/ready").status_code == 200
        for run in runs.values():
            run.start()
        while draining_gateway.metric("gateway_num_requests_running") < 2:
            time.sleep(0.01)
        draining_gateway.drain()
        time.sleep(0.05)
        assert kept_alive.get("/ready").status_code == 503
        refused = kept_alive.post("/v1/chat/completions", json=body(5, False))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
    for run in runs.values():
        run.join(10)
    assert json.loads(results["short"][-2])["choices"][0]["finish_reason"] == "length"
    assert json.loads(results["long"][-2])["error"]["code"] == "shutting_down"
    assert results["long"][-1] == "[DONE]"
