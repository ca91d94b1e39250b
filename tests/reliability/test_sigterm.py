"""SIGTERM under load, against a real `trtllm-gateway serve` process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.reliability.served import Served, served

STREAMS = 16


@pytest.fixture
def server_process() -> Iterator[Served]:
    env = {
        "GATEWAY_ENGINE": "synthetic",
        "GATEWAY_SYNTHETIC__TOKEN_SECONDS": "0.02",
        "GATEWAY_SHUTDOWN_GRACE_SECONDS": "10",
    }
    with served(env) as process_and_url:
        yield process_and_url


async def stream(client: httpx.AsyncClient) -> str:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 60,  # about 1.2 s at 20 ms a step: well within the grace
        "stream": True,
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        return (await response.aread()).decode()


async def running(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("gateway_num_requests_running{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no running gauge")


async def test_sigterm_lets_accepted_streams_finish_and_exits_0(
    server_process: Served,
) -> None:
    process, url = server_process
    limits = httpx.Limits(max_connections=STREAMS + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        runs = [asyncio.create_task(stream(client)) for _ in range(STREAMS)]
        while await running(client) < STREAMS:  # all accepted and streaming
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        bodies = await asyncio.gather(*runs)
    for body in bodies:
        assert '"finish_reason":"length"' in body
        assert '"error"' not in body
        assert body.endswith("data: [DONE]\n\n")
    assert await asyncio.to_thread(process.wait, 30) == 0


async def test_during_the_drain_new_requests_get_503_with_retry_after_on_any_connection(
    server_process: Served,
) -> None:
    """The gateway keeps listening while a stream runs: a client on an open keep-alive
    connection, or on a new one, is told to retry elsewhere instead of being refused."""
    process, url = server_process
    chat = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}]}
    one = httpx.Limits(max_connections=1)
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as streamer,
        httpx.AsyncClient(base_url=url, timeout=30, limits=one) as kept,
        httpx.AsyncClient(base_url=url, timeout=30) as fresh,
    ):
        assert (await kept.get("/health")).status_code == 200  # opens its one connection
        body = {**chat, "max_tokens": 100, "stream": True}  # about 2 s at 20 ms a step
        streaming = asyncio.create_task(streamer.post("/v1/chat/completions", json=body))
        while await running(streamer) < 1:
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # uvicorn alone closed its sockets after about 0.3 s
        for client in [kept, fresh]:  # fresh opens its connection after the SIGTERM
            refused = await client.post("/v1/chat/completions", json=chat)
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
            assert refused.json()["error"]["code"] == "shutting_down"
            assert (await client.get("/ready")).status_code == 503
        streamed = (await streaming).text
    assert '"finish_reason":"length"' in streamed and '"error"' not in streamed
    assert streamed.endswith("data: [DONE]\n\n")
    assert await asyncio.to_thread(process.wait, 5) == 0  # once no request is in flight
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
