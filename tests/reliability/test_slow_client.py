"""A client that reads slowly stalls nobody else and gets its deltas coalesced."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

TOKENS = 1500


@pytest.fixture(scope="module")
def fast_engine_gateway() -> Iterator[LiveServer]:
    settings = SyntheticSettings(token_seconds=0.002, max_seq_len=4096)
    yield from serve(Settings(engine="synthetic", synthetic=settings), send_buffer=4096)


def request_bytes(port: int, max_tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": "SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    payload = bytearray()
    while body:
        size, rest = body.split(b"\r\n", 1)
        length = int(size, 16)
        payload += rest[:length]
        body = rest[length + 2 :]
    return bytes(payload)


async def slow_read(port: int) -> bytes:
    """Stream through a 4 KiB receive window, reading 1 KiB every 20 ms."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(request_bytes(port, TOKENS))
    received = bytearray()
    while chunk := await reader.read(1024):
        received += chunk
        await asyncio.sleep(0.02)
    writer.close()
    return bytes(received)


async def fast_stream(client: httpx.AsyncClient) -> float:
    began = time.monotonic()
    body = json.loads(request_bytes(0, 100).split(b"\r\n\r\n", 1)[1])
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        await response.aread()
    return time.monotonic() - began


async def test_slow_reader_gets_coalesced_chunks_and_stalls_no_one(
    fast_engine_gateway: LiveServer,
) -> None:
    port = int(fast_engine_gateway.url.rsplit(":", 1)[1])
    slow = asyncio.create_task(slow_read(port))
    await asyncio.sleep(0.5)  # the slow reader is behind by now
    async with httpx.AsyncClient(base_url=fast_engine_gateway.url, timeout=30) as client:
        fast = await asyncio.gather(*(fast_stream(client) for _ in range(8)))
    raw = await asyncio.wait_for(slow, 60)
    # 100 tokens take 0.2 s of engine steps: the others are not held up by the slow one.
    assert max(fast) < 5, fast
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    sse = dechunk(body)
    assert sse.endswith(b"data: [DONE]\n\n")
    content_frames = [f for f in sse.split(b"\n\n") if b'"delta":{"content"' in f]
    # Fewer frames than tokens: while the reader lagged, tokens were sent together.
    assert len(content_frames) < 0.9 * TOKENS, len(content_frames)
    usage = httpx.post(
        f"{fast_engine_gateway.url}/v1/chat/completions",
        json=json.loads(request_bytes(0, TOKENS).split(b"\r\n\r\n", 1)[1]) | {"stream": False},
    ).json()
    streamed = "".join(
        json.loads(f.split(b"data: ", 1)[1])["choices"][0]["delta"].get("content", "")
        for f in content_frames
    )
    assert streamed == usage["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def impatient_gateway() -> Iterator[LiveServer]:
    settings = Settings(
        engine="synthetic",
        synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=65536),
        sse_keepalive_seconds=0.2,
        send_timeout_seconds=0.3,
    )
    yield from serve(settings, send_buffer=4096)


async def test_a_client_that_stops_reading_is_dropped_and_aborted(
    impatient_gateway: LiveServer,
) -> None:
    port = int(impatient_gateway.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request_bytes(port, 60000))  # then never read a byte
    try:
        deadline = time.monotonic() + 10
        while impatient_gateway.metric("gateway_num_requests_running") == 0:
            assert time.monotonic() < deadline, "the request never started"
            await asyncio.sleep(0.02)
        while impatient_gateway.metric("gateway_num_requests_running") != 0:
            assert time.monotonic() < deadline, "a client that reads nothing holds its slot"
            await asyncio.sleep(0.05)
    finally:
        sock.close()
