"""A burst at several times capacity: 200 or 429 with Retry-After, nothing else, nothing hung."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

CAPACITY = 16
BURST = 8 * CAPACITY


@pytest.fixture(scope="module")
def small_gateway() -> Iterator[LiveServer]:
    settings = Settings(
        engine="synthetic",
        max_concurrent_requests=CAPACITY,
        synthetic=SyntheticSettings(token_seconds=0.01, max_seq_len=1024),
    )
    yield from serve(settings)


async def one_request(client: httpx.AsyncClient, stream: bool) -> tuple[int, str | None]:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 30,
        "stream": stream,
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        text = (await response.aread()).decode()
        if response.status_code == 200 and stream:
            assert text.endswith("data: [DONE]\n\n")  # every accepted stream completes
        return response.status_code, response.headers.get("retry-after")


async def health_latencies(client: httpx.AsyncClient, until: asyncio.Event) -> list[float]:
    latencies = []
    while not until.is_set():
        began = time.perf_counter()
        assert (await client.get("/health")).status_code == 200
        latencies.append(time.perf_counter() - began)
        await asyncio.sleep(0.05)
    return latencies


async def test_burst_gets_only_200_or_429_and_health_stays_fast(
    small_gateway: LiveServer,
) -> None:
    limits = httpx.Limits(max_connections=BURST + 2)
    async with httpx.AsyncClient(base_url=small_gateway.url, timeout=30, limits=limits) as client:
        done = asyncio.Event()
        prober = asyncio.create_task(health_latencies(client, done))
        results = await asyncio.wait_for(
            asyncio.gather(*(one_request(client, i % 2 == 0) for i in range(BURST))), 60
        )
        done.set()
        latencies = await prober
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] >= CAPACITY
    assert statuses[429] > 0
    assert all(retry == "1" for status, retry in results if status == 429)
    # Not a speed goal (the client shares this process and its 2 cores): /health must
    # not queue behind the burst's prefill and streams.
    assert max(latencies) < 2, latencies
    rejected = small_gateway.metric("gateway_admission_rejections_total")
    assert rejected == statuses[429]


async def test_a_full_server_refuses_before_rendering_the_prompt(
    small_gateway: LiveServer,
) -> None:
    """Refusing must cost little: a full server answers 429 before the chat template runs
    (a request whose template kwargs break rendering gets 429, not the template's 400)."""
    unrenderable = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "hi"}],
        "chat_template_kwargs": {"messages": []},  # the template's own variable: a 400
    }
    async with httpx.AsyncClient(base_url=small_gateway.url, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=unrenderable)).status_code == 400
        body = {**unrenderable, "chat_template_kwargs": {}, "max_tokens": 400, "stream": True}
        holders = [
            asyncio.create_task(client.post("/v1/chat/completions", json=body))
            for _ in range(CAPACITY)
        ]
        while small_gateway.metric("gateway_num_requests_running") < CAPACITY:
            await asyncio.sleep(0.01)
        refused = await client.post("/v1/chat/completions", json=unrenderable)
        assert refused.status_code == 429
        assert "concurrent requests" in refused.json()["error"]["message"]
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    small_gateway.wait_idle(10, "the held streams were not aborted")
