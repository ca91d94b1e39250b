"""The transport floor (bench/floor.py): its stream as OpenAI clients read it, the same
frames as the gateway's, one step clock for every stream, and its process under the sweep."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import httpx
import openai
import orjson
import pytest
import uvicorn

from bench.floor import CHAT_PATH, TOKEN_TEXT, FloorApp, Message, config
from bench.load import ClientPool
from bench.server import floor, wait_idle
from bench.sweep import SweepConfig, measure_level
from bench.workload import chat_body
from engines.base import FinishReason
from gateway.openai.chunks import DONE, ChatChunks
from gateway.serving.generation import Usage
from gateway.text.streaming import ChoiceStream, Delta


class _FloorServer:
    """The floor app on uvicorn, configured as `python -m bench.floor` does, in a thread."""

    def __init__(self) -> None:
        self.app = FloorApp(token_seconds=0.005)
        self.server = uvicorn.Server(config(self.app, "127.0.0.1", 0))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listener]}, daemon=True
        )

    def __enter__(self) -> _FloorServer:
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "the floor failed to start"
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def floor_server() -> Iterator[_FloorServer]:
    with _FloorServer() as server:
        yield server


def test_the_floor_runs_on_the_gateways_uvicorn_stack() -> None:
    served = config(FloorApp(token_seconds=0.02), "127.0.0.1", 0)
    served.load()
    assert served.http_protocol_class.__name__ == "HttpToolsProtocol"
    factory = served.get_loop_factory()
    assert factory is asyncio.SelectorEventLoop  # as the gateway's (gateway/cli.py)
    assert (served.access_log, served.proxy_headers) == (False, True)


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_sdk_reads_the_floor_stream(floor_server: _FloorServer, include_usage: bool) -> None:
    client = openai.OpenAI(
        base_url=f"{floor_server.url}/v1", api_key="unused", max_retries=0, timeout=30
    )
    with client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": include_usage},
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks.pop() if include_usage else None
    assert [chunk.choices[0].delta.content for chunk in chunks[1:-1]] == [TOKEN_TEXT] * 5
    assert chunks[-1].choices[0].finish_reason == "length"
    if usage is not None:
        assert usage.choices == []
        assert usage.usage is not None and usage.usage.completion_tokens == 5
    assert all(chunk.usage is None for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1


def test_the_floor_sends_the_gateways_frames(floor_server: _FloorServer) -> None:
    response = httpx.post(floor_server.url + CHAT_PATH, content=chat_body("m", "hi", 3), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    first = orjson.loads(response.content.split(b"\n\n")[0].removeprefix(b"data: "))
    # What gateway/openai/chunks.py sends for the same completion, [DONE] last.
    chunks = ChatChunks(first["id"], first["created"], "m")
    no_detokenizer = cast(Any, None)
    choice = ChoiceStream(0, no_detokenizer, finish_reason=FinishReason.LENGTH)
    content = chunks.delta(choice, Delta(content=TOKEN_TEXT))
    usage = chunks.usage(Usage(0, 3).body())
    expected = [chunks.role(choice), content, content, content, chunks.finish(choice), usage, DONE]
    assert response.content == b"".join(expected)


def test_the_floor_answers_health_and_refuses_what_it_does_not_serve(
    floor_server: _FloorServer,
) -> None:
    health = httpx.get(floor_server.url + "/health", timeout=30)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    unstreamed = orjson.dumps({"model": "m", "max_tokens": 2, "stream": False})
    assert httpx.post(floor_server.url + CHAT_PATH, content=unstreamed).status_code == 400
    assert httpx.post(floor_server.url + CHAT_PATH, content=b"[1").status_code == 400
    assert httpx.get(floor_server.url + "/nowhere").status_code == 404


async def _lifespan(app: FloorApp) -> tuple[asyncio.Queue[Message], asyncio.Task[None]]:
    """Starts the app as uvicorn does; put a shutdown message in the queue to stop it."""
    messages: asyncio.Queue[Message] = asyncio.Queue()
    sent: asyncio.Queue[Message] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, messages.get, sent.put))
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    return messages, task


async def _stream(app: FloorApp, body: bytes) -> list[bytes]:
    """The body frames one chat completion sends, driven straight through ASGI."""
    frames: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            frames.append(message["body"])

    await app({"type": "http", "method": "POST", "path": CHAT_PATH}, receive, send)
    return frames


async def test_concurrent_streams_share_one_step_clock() -> None:
    app = FloorApp(token_seconds=0.001)
    messages, lifespan = await _lifespan(app)
    try:
        # Both requests reach the clock before it wakes: one step admits both.
        streams = await asyncio.gather(*(_stream(app, chat_body("m", "hi", 3)) for _ in range(2)))
    finally:
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan
    for frames in streams:
        assert sum(b'"content":" tok"' in frame for frame in frames) == 3
        assert frames[-1] == DONE
    # One clock for both: 3 steps gave 6 tokens (a clock per stream would take 6).
    clock = app.clock
    assert (clock.steps, clock.given, clock.running, clock.waiting) == (3, 6, 0, 0)


def test_the_sweep_measures_the_floor_process() -> None:
    """`python -m bench.floor` as the sweep starts it, one short level of its load."""
    config = SweepConfig(
        levels=(16,), token_seconds=0.002, output_tokens=8, seconds=1.0, warmup=0.5, clients=1
    )
    with floor(config.token_seconds) as server, ClientPool(1) as clients:
        level = measure_level(server, clients, 16, config)
        wait_idle(server)  # the floor's /metrics says when it runs nothing
    figures = level.figures()
    assert (figures["errors"], figures["unfinished"]) == (0, 0)
    assert figures["requests"] > 0
    assert figures["cpu_us_per_token"] > 0
    assert figures["delivered_ratio"] > 0
