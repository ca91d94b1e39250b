"""The transport floor: the least any Python gateway on this stack can cost.

A raw ASGI app served by the gateway's own uvicorn configuration (`gateway/cli.py`:
its event loop, asyncio's; uvicorn's default HTTP implementation, httptools when
installed; proxy headers on, uvicorn's access log off), with nothing of the
gateway: no FastAPI, no pydantic validation, no chat template or tokenizer, no
detokenizer, no metrics, no middleware.

`POST /v1/chat/completions` reads `model`, `max_tokens`, `stream` and
`stream_options` from the JSON body and streams the frames the gateway streams,
in `gateway/openai/chunks.py`'s exact shape: the role chunk, one content chunk of a
fixed token text per step, the finish chunk ("length"), the usage chunk when
`stream_options.include_usage` is true, `data: [DONE]`. Each frame is one ASGI
`send`, as in the gateway. A request's frames are built once when it arrives,
since every content chunk is the same; `prompt_tokens` is 0, nothing is tokenized.

Every stream is woken by one shared `StepClock` that copies the synthetic
engine's step loop (engines/synthetic/engine.py), admission at step boundaries
included, so the sweep's ideal rate (bench/sweep.py) holds for both servers and
their delivered/ideal ratios compare.

Left out on purpose: watching for a client that leaves. uvicorn drops sends to a
closed connection, so such a stream runs to `max_tokens` for nothing, where the
gateway must abort the engine's work.

    python -m bench.floor --port 8001 --token-seconds 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn

from gateway.cli import EVENT_LOOP

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
TOKEN_TEXT = " tok"
DEFAULT_MAX_TOKENS = 16  # when a request names none; the bench always does
# The headers of the gateway's streams (gateway/http/responses.py; its X-Request-Id aside).
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_END = b"\n\n"


class StepClock:
    """One task that steps for every stream, as the synthetic engine's step loop does.

    Each step admits the waiting requests (paying `prefill_seconds` once when it
    admitted any), sleeps `token_seconds`, then resolves one future that every
    running stream awaits. The clock itself counts each request's last step, so it
    idles once none is left whatever its streams do. Made on the running loop.
    """

    def __init__(self, token_seconds: float, prefill_seconds: float = 0.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._token_seconds = token_seconds
        self._prefill_seconds = prefill_seconds
        self.steps = 0  # steps taken so far
        self.given = 0  # tokens given so far, all streams together
        self.running = 0  # admitted requests with tokens still to come
        self._waiting: list[int] = []  # the token counts of requests not yet admitted
        self._ending: Counter[int] = Counter()  # step -> requests that it finishes
        self._wake = asyncio.Event()
        self._admitted: asyncio.Future[int] = self._loop.create_future()
        self._stepped: asyncio.Future[None] = self._loop.create_future()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def admit(self, tokens: int) -> int:
        """Waits for the step boundary that admits a request of `tokens` tokens.

        Returns the number of steps taken before it: its n-th token (from 1)
        comes with step `admitted + n`.
        """
        admitted = self._admitted
        self._waiting.append(tokens)
        self._wake.set()
        return await admitted

    async def reach(self, step: int) -> None:
        """Until `step` has been taken (at once if it has: a late stream catches up)."""
        while self.steps < step:
            await self._stepped

    async def run(self) -> None:
        while True:
            if not self._waiting and not self.running:
                self._wake.clear()
                await self._wake.wait()
            if self._waiting:
                self._admit()
                if self._prefill_seconds:
                    await asyncio.sleep(self._prefill_seconds)
            await asyncio.sleep(self._token_seconds)
            self._step()

    def _admit(self) -> None:
        for tokens in self._waiting:
            self._ending[self.steps + tokens] += 1
        self.running += len(self._waiting)
        self._waiting.clear()
        admitted, self._admitted = self._admitted, self._loop.create_future()
        admitted.set_result(self.steps)

    def _step(self) -> None:
        self.steps += 1
        self.given += self.running
        self.running -= self._ending.pop(self.steps, 0)
        stepped, self._stepped = self._stepped, self._loop.create_future()
        stepped.set_result(None)  # wakes every stream at once


@dataclass(frozen=True, slots=True)
class ChatFrames:
    """A streamed chat completion's SSE frames, byte for byte as the gateway builds them
    (gateway/openai/chunks.py)."""

    role: bytes
    content: bytes  # the same for every token
    finish: bytes
    usage: bytes

    @classmethod
    def build(cls, completion_id: str, created: int, model: str, tokens: int) -> ChatFrames:
        fields = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        head = b"data: " + orjson.dumps(fields)[:-1]  # open, to splice the rest into
        choice = head + b',"choices":[{"index":0,"delta":'
        pending = b',"logprobs":null,"finish_reason":null}]}' + _END
        usage = {
            "prompt_tokens": 0,
            "completion_tokens": tokens,
            "total_tokens": tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        return cls(
            role=choice + b'{"role":"assistant","content":""}' + pending,
            content=choice + b'{"content":' + orjson.dumps(TOKEN_TEXT) + b"}" + pending,
            finish=choice + b'{},"logprobs":null,"finish_reason":"length"}]}' + _END,
            usage=head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}" + _END,
        )


class FloorApp:
    """The ASGI app: chat completions (streamed only), `GET /health`, `GET /metrics`.

    `/metrics` answers with the gateway's names for the three figures the sweep
    reads between and around its windows, so that one harness measures both servers.
    """

    def __init__(self, token_seconds: float, prefill_seconds: float = 0.0) -> None:
        self._token_seconds = token_seconds
        self._prefill_seconds = prefill_seconds
        self._clock: StepClock | None = None  # made at the lifespan's startup, on the loop

    @property
    def clock(self) -> StepClock:
        assert self._clock is not None, "the app has not started"
        return self._clock

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        route = (scope["method"], scope["path"]) if scope["type"] == "http" else None
        if route == ("POST", CHAT_PATH):
            await self._chat(receive, send)
        elif route == ("GET", "/health"):
            await _answer(send, 200, b'{"status":"ok"}')
        elif route == ("GET", "/metrics"):
            await _answer(send, 200, self._metrics(), b"text/plain; version=0.0.4")
        elif route is not None:
            await _answer(send, 404, _error(b"not found"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        task: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._clock = StepClock(self._token_seconds, self._prefill_seconds)
                task = asyncio.create_task(self._clock.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if task is not None:
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            body = orjson.loads(await _read_body(receive))
            tokens = max(1, int(body.get("max_tokens") or DEFAULT_MAX_TOKENS))
            model, streamed = str(body.get("model", "")), body.get("stream") is True
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            await _answer(send, 400, _error(b"the body is not a chat completion request"))
            return
        if not streamed:
            await _answer(send, 400, _error(b"the transport floor streams only"))
            return
        frames = ChatFrames.build(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model, tokens)
        await self._stream(send, frames, tokens, include_usage)

    async def _stream(self, send: Send, frames: ChatFrames, tokens: int, usage: bool) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await send(_body(frames.role))
        clock = self.clock
        admitted = await clock.admit(tokens)
        content = _body(frames.content)  # uvicorn only reads a message: one serves every token
        for token in range(1, tokens + 1):
            await clock.reach(admitted + token)
            await send(content)
        await send(_body(frames.finish))
        if usage:
            await send(_body(frames.usage))
        await send(_body(_DONE))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _metrics(self) -> bytes:
        clock = self.clock
        return (
            f"gateway_num_requests_running {clock.running}\n"
            f"gateway_num_requests_waiting {clock.waiting}\n"
            f"gateway_generation_tokens_total {clock.given}\n"
        ).encode()


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


def _error(message: bytes) -> bytes:
    return b'{"error":{"message":"' + message + b'","type":"invalid_request_error"}}'


async def _answer(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def config(app: FloorApp, host: str, port: int) -> uvicorn.Config:
    """What gateway/cli.py gives uvicorn, less what only the gateway has (its app,
    its graceful-shutdown margin): its event loop, the default HTTP implementation,
    the gateway's default log level, and no uvicorn access log (the gateway logs
    access from a middleware of its own, which the floor does not have)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False, loop=EVENT_LOOP
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-seconds", type=float, default=0.02, help="the step clock's step")
    parser.add_argument("--prefill-seconds", type=float, default=0.0, help="per admitting step")
    args = parser.parse_args(argv)
    app = FloorApp(args.token_seconds, args.prefill_seconds)
    uvicorn.Server(config(app, args.host, args.port)).run()


if __name__ == "__main__":
    main()
