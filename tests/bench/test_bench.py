"""The benchmark harness's own checks: its client parses what servers send, and its
figures are sane against a live synthetic gateway (a second or two of load)."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
from pathlib import Path

import pytest

from bench.load import ClientPool, LoadPlan, WindowStats
from bench.profile import summarise
from bench.server import ServerProcess, cpu_seconds, machine_busy_seconds
from bench.sse_client import Connection, Refused
from bench.sweep import Level, Sweep, SweepConfig
from bench.sweep_report import sweep_figures
from bench.workload import CHAT_PATH, chat_bodies, mean_max_tokens
from tests.conftest import LiveServer

# A chunked SSE answer as a server other than ours might frame it: CRLF line
# ends, a keep-alive comment, usage inside the finish chunk, no [DONE].
_EVENTS = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\r\n\r\n',
    b": ping\r\n\r\n",
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\r\n\r\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":2}}\r\n\r\n',
)


async def _odd_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(2):  # two requests on one kept-alive connection
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in _EVENTS) + b"0\r\n\r\n"
        answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body
        for start in range(0, len(answer), 7):  # split at arbitrary points
            writer.write(answer[start : start + 7])
            await writer.drain()
    writer.close()


async def test_client_parses_split_crlf_streams_and_keeps_the_connection() -> None:
    server = await asyncio.start_server(_odd_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = Connection("127.0.0.1", port)
    try:
        for _ in range(2):
            record = await connection.stream("/", b"{}")
            assert len(record.content_times) == 2
            assert record.text_chars == len("Hello")
            assert (record.prompt_tokens, record.completion_tokens) == (7, 2)
            assert record.sent <= record.content_times[0] <= record.done
    finally:
        connection.close()
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))


async def _refusing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 429, then a stream, on one kept-alive connection."""
    await _read_request(reader)
    writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 2\r\n\r\n{}")
    await _read_request(reader)
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in _EVENTS) + b"0\r\n\r\n"
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)
    await writer.drain()
    writer.close()


async def test_a_refusal_keeps_the_connection_and_says_when_to_retry() -> None:
    """As a client's pool would: a whole 429 answer leaves the connection usable."""
    server = await asyncio.start_server(_refusing_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = Connection("127.0.0.1", port)
    try:
        with pytest.raises(Refused, match="HTTP 429") as refused:
            await connection.stream("/", b"{}")
        assert refused.value.retry_after == 2.0
        record = await connection.stream("/", b"{}")  # the same connection: the server
        assert record.text_chars == len("Hello")  # accepts only one
    finally:
        connection.close()
        server.close()


def test_load_against_a_live_gateway(synthetic_gateway: LiveServer) -> None:
    port = int(synthetic_gateway.url.rsplit(":", 1)[1])
    bodies = chat_bodies("SmolLM2-135M-Instruct", 16, 16, count=8)
    with ClientPool(1) as clients:
        start = time.perf_counter() + 0.3
        window = (start + 0.5, start + 2.0)
        plan = LoadPlan("127.0.0.1", port, CHAT_PATH, 4, bodies, start, 0.2, window, start + 10)
        stats = clients.run(plan)
    assert (stats.errors, stats.error_samples, stats.unfinished) == (0, [], 0)
    assert stats.requests > 10
    # The synthetic engine sends one token per 1 ms step; a 4-stream load keeps up.
    assert math.isclose(stats.tokens / stats.chunks, 1.0, rel_tol=0.05)
    assert 0.0005 < statistics.median(stats.itl) < 0.05
    assert 0 < statistics.median(stats.ttft) < 0.5
    assert stats.completion_tokens / stats.requests <= max(16 * 3 // 2, 1)
    assert 0 < stats.cpu_seconds < 1.5 * (window[1] - window[0])


def test_metrics_parsing_and_cpu_readings(synthetic_gateway: LiveServer) -> None:
    port = int(synthetic_gateway.url.rsplit(":", 1)[1])
    metrics = ServerProcess("live", [], port).metrics()
    assert "gateway_generation_tokens_total" in metrics
    assert metrics["gateway_num_requests_running"] >= 0
    assert cpu_seconds(os.getpid()) > 0
    assert machine_busy_seconds() > 0


def test_ideal_rate_follows_the_engine_pace() -> None:
    config = SweepConfig(token_seconds=0.02)
    stats = WindowStats(tokens=1000.0, chunks=1000)

    def level(streams: int) -> Level:
        return Level(
            streams, config, mean_output=128.0, client=stats, server_cpu=1.0, machine_cpu=1.0,
            emitted_tps=50.0, queue_wait=0.0, health=[], scrape_seconds=0.0,
        )  # fmt: skip

    assert math.isclose(level(1).ideal_tps(), 50.0)  # alone: one token per step
    # Together, each 128-token request spends one step waiting for admission.
    assert math.isclose(level(64).ideal_tps(), 64 * 128 / (129 * 0.02))
    assert math.isclose(level(64).figures()["cpu_us_per_token"], 1000.0)


def test_sweep_figures_put_the_floor_beside_the_gateway() -> None:
    config = SweepConfig(token_seconds=0.02, seconds=10.0)
    stats = WindowStats(tokens=1000.0, chunks=1000, requests=50)

    def level(streams: int, server_cpu: float, label: str = "") -> Level:
        return Level(
            streams, config, mean_output=128.0, client=stats, server_cpu=server_cpu,
            machine_cpu=1.0, emitted_tps=50.0, queue_wait=0.0, health=[], scrape_seconds=0.0,
            label=label,
        )  # fmt: skip

    gateway = [level(64, 0.08), level(64, 0.2, "64 x 1 tok")]
    floor = [level(64, 0.02), level(64, 0.05, "64 x 1 tok")]
    figures = sweep_figures(Sweep(gateway, floor))
    assert figures["cpu_us_per_token_c64"] == 80.0  # the gateway's own names stay
    assert math.isclose(figures["request_cpu_us"], 200.0)
    assert math.isclose(figures["floor_cpu_us_per_token_c64"], 20.0)
    assert math.isclose(figures["ratio_cpu_per_token_c64"], 4.0)
    assert figures["floor_delivered_ratio_c64"] > 0
    assert math.isclose(figures["floor_request_cpu_us"], 50.0)
    assert math.isclose(figures["ratio_request_cpu"], 4.0)
    # --no-floor: the gateway's figures alone.
    alone = sweep_figures(Sweep(gateway, []))
    assert not [key for key in alone if key.startswith(("floor_", "ratio_"))]
    assert alone["cpu_us_per_token_c64"] == 80.0


def test_profile_summary_ranks_own_samples(tmp_path: Path) -> None:
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text(
        "main (a/app.py:1);send (b/http.py:9) 30\n"
        "main (a/app.py:1);encode (b/json.py:3) 10\n"
        "main (a/app.py:2) 10\n"
    )
    lines = summarise(collapsed).splitlines()
    assert lines[0].startswith("50 samples")
    assert lines[1].endswith("send (b/http.py)") and "60.0 /  60.0" in lines[1]
    assert any(line.endswith("main (a/app.py)") and "100.0" in line for line in lines)


def test_bodies_vary_output_length_around_the_mean() -> None:
    bodies = chat_bodies("m", 4, 128, count=64, seed=1)
    assert len(set(bodies)) == 64
    assert 100 < mean_max_tokens(bodies) < 156
    assert mean_max_tokens(chat_bodies("m", 4, 1, count=4)) == 1
