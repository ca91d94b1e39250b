"""Many streams cancelled mid-generation: nothing keeps running, every gauge goes idle.

The pattern of vLLM's `test_abort_metrics_reset`, on every engine.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import LiveServer

STREAMS = 24


async def open_and_abandon(client: httpx.AsyncClient, model: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        for _ in range(4):  # the role chunk and a token or two: generation has begun
            await anext(lines)
    # Leaving the block closes the connection mid-stream.


def idle_within(server: LiveServer, seconds: float, kv_idle: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        gauges = [
            server.metric("gateway_num_requests_running"),
            server.metric("gateway_num_requests_waiting"),
            server.metric("gateway_kv_cache_usage_perc"),
        ]
        if gauges == [0, 0, kv_idle]:
            return
        assert time.monotonic() < deadline, f"not idle: running, waiting, kv = {gauges}"
        time.sleep(0.05)


async def test_disconnect_storm_leaves_the_engine_idle(gateway: LiveServer) -> None:
    kv_idle = gateway.metric("gateway_kv_cache_usage_perc")
    model = httpx.get(f"{gateway.url}/v1/models").json()["data"][0]["id"]
    limits = httpx.Limits(max_connections=STREAMS)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(open_and_abandon(client, model) for _ in range(STREAMS)))
    await asyncio.to_thread(idle_within, gateway, 10, kv_idle)
    aborted = 'gateway_request_success_total{finished_reason="abort"'
    assert aborted in httpx.get(f"{gateway.url}/metrics").text
