"""The engine in its worker process, killed under a real `trtllm-gateway serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.served import Served, served

BODY = {
    "model": "SmolLM2-135M-Instruct",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 100_000,  # 20 ms a step: runs until the test ends it
}


@pytest.fixture
def gateway() -> Iterator[Served]:
    env = {
        "GATEWAY_ENGINE": "synthetic",
        "GATEWAY_SYNTHETIC__WORKER": "true",
        "GATEWAY_SYNTHETIC__TOKEN_SECONDS": "0.02",
    }
    with served(env) as process_and_url:
        yield process_and_url


def worker_of(process: subprocess.Popen[bytes]) -> int:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


async def stream(client: httpx.AsyncClient, started: asyncio.Event) -> list[str]:
    async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as r:
        assert r.status_code == 200
        events = []
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                started.set()
        return events


async def test_a_killed_worker_ends_every_request_with_an_error_and_fails_health(
    gateway: Served,
) -> None:
    process, url = gateway
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        started = [asyncio.Event() for _ in range(4)]
        streams = [asyncio.create_task(stream(client, event)) for event in started]
        whole = asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
        for event in started:
            await asyncio.wait_for(event.wait(), 10)
        os.kill(worker_of(process), signal.SIGKILL)
        for events in await asyncio.gather(*streams):
            error, done = events[-2:]
            assert done == "[DONE]"
            assert '"error"' in error and "killed by SIGKILL" in error, error
        response = await asyncio.wait_for(whole, 10)
        assert response.status_code == 503
        assert "killed by SIGKILL" in response.json()["error"]["message"]
        assert (await client.get("/health")).status_code == 503
        assert (await client.get("/ready")).status_code == 503
        refused = await client.post("/v1/chat/completions", json={**BODY, "max_tokens": 1})
        assert refused.status_code == 503
    assert process.poll() is None  # the gateway stays up for its probes to be read


def test_a_killed_gateway_leaves_no_worker_behind(
    gateway: Served,
) -> None:
    process, _ = gateway
    worker = worker_of(process)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the gateway"
        time.sleep(0.05)
