"""Many streams cancelled mid-generation: nothing keeps running, every gauge goes idle,
and every stream cut is counted as an abort.

The pattern of vLLM's `test_abort_metrics_reset`, on every engine.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import LiveServer, Scrape

STREAMS = 24
MAX_TOKENS = 400
SUCCESS = "gateway_request_success_total"


def body(model: str, max_tokens: int = MAX_TOKENS, stream: bool = True) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def open_and_abandon(client: httpx.AsyncClient, model: str) -> None:
    async with client.stream("POST", "/v1/chat/completions", json=body(model)) as response:
        assert response.status_code == 200
        # The role chunk, then the first token's: generation has begun. (Counting lines
        # would not do: keep-alive comments come too, the first one at once.)
        data = 0
        async for line in response.aiter_lines():
            data += line.startswith("data: ")
            if data == 2:
                break
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


def all_finished(server: LiveServer, before: Scrape, requests: int, seconds: float) -> Scrape:
    """The metrics once `requests` more requests have finished, whatever their reason."""
    deadline = time.monotonic() + seconds
    while (after := server.scrape()).growth(before, SUCCESS) < requests:
        finished = after.growth(before, SUCCESS)
        assert time.monotonic() < deadline, f"{finished} of {requests} requests counted"
        time.sleep(0.05)
    return after


async def test_disconnect_storm_leaves_the_engine_idle(gateway: LiveServer) -> None:
    await asyncio.to_thread(gateway.wait_idle, 10, "an earlier test left the engine busy")
    kv_idle = gateway.metric("gateway_kv_cache_usage_perc")
    model = httpx.get(f"{gateway.url}/v1/models").json()["data"][0]["id"]
    single = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body(model, 1, False), timeout=60
    )
    assert single.status_code == 200
    prompt_tokens = single.json()["usage"]["prompt_tokens"]
    before = gateway.scrape()
    limits = httpx.Limits(max_connections=STREAMS)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(open_and_abandon(client, model) for _ in range(STREAMS)))
    await asyncio.to_thread(idle_within, gateway, 10, kv_idle)
    after = await asyncio.to_thread(all_finished, gateway, before, STREAMS, 10)

    def grown(metric: str, **labels: str) -> float:
        return after.growth(before, metric, **labels)

    for reason in ("stop", "length", "tool_calls", "abort", "error"):
        assert grown(SUCCESS, finished_reason=reason) == (STREAMS if reason == "abort" else 0)
    # Each stream had its first token; the tokens delivered until the cut are counted.
    assert grown("gateway_time_to_first_token_seconds_count") == STREAMS
    assert grown("gateway_e2e_request_latency_seconds_count") == STREAMS
    assert grown("gateway_prompt_tokens_total") == STREAMS * prompt_tokens
    assert STREAMS <= grown("gateway_generation_tokens_total") < STREAMS * MAX_TOKENS
