"""The request's owner with fake ASGI `receive`/`send`: every end releases the ticket once.

Each test runs a real run (the synthetic engine, a real `Generation` and metrics)
through `EventStream` or `JSONCompletion` and ends it one way: finished, failed,
the client gone before the first byte or mid-stream, past its deadline, drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from engines.base import GenerationRequest, SamplingParams
from engines.settings import SyntheticSettings
from engines.synthetic import SyntheticEngine
from gateway.anthropic.messages import MessageEvents
from gateway.errors import ClientDisconnected, EngineFailure
from gateway.http.responses import EventStream, JSONCompletion, _send_now
from gateway.openai.chunks import ChatChunks
from gateway.responses.events import ResponseEvents, head
from gateway.responses.protocol import ResponsesRequest
from gateway.serving.admission import Admission, Ticket
from gateway.serving.delivery import Delivery
from gateway.serving.generation import Generation
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.metrics import Metrics
from gateway.serving.runs import Run, Streamed, Whole
from gateway.settings import Settings
from gateway.text.streaming import ChoiceStream

SCOPE: dict[str, Any] = {"type": "http", "state": {}}


class Words:
    """A detokenizer that writes each id as a word: output the test can count."""

    def push(self, token_ids: Sequence[int]) -> str:
        return "".join(f" w{token_id}" for token_id in token_ids)


class CountedTicket(Ticket):
    releases = 0

    def release(self) -> None:
        self.releases += 1
        super().release()


class Client:
    """A fake ASGI client that leaves after `leave_after` body messages (0: at once)."""

    def __init__(self, leave_after: int | None = None) -> None:
        self.messages: list[MutableMapping[str, Any]] = []
        self.gone = asyncio.Event()
        self.leave_after = leave_after
        if leave_after == 0:
            self.gone.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.messages.append(message)
        bodies = sum(m["type"] == "http.response.body" for m in self.messages)
        if self.leave_after is not None and bodies >= self.leave_after:
            self.gone.set()

    def frames(self) -> list[bytes]:
        body = b"".join(m.get("body", b"") for m in self.messages)
        return [frame for frame in body.split(b"\n\n") if frame]


class Fixture:
    def __init__(self, engine: SyntheticEngine, lifecycle: Lifecycle) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, "m")
        rejections = Counter("r", "r", ("model_name", "reason"), registry=self.registry)
        self.admission = Admission(8, 1000, 1, rejections, "m")
        self.delivery = Delivery()

    def run(self, max_tokens: int = 3, n: int = 1) -> tuple[Run, CountedTicket]:
        ticket = CountedTicket(self.admission, 2)
        self.admission.in_flight += 1  # what `admit` does
        self.admission.queued_tokens += 2
        generations = [
            Generation(
                self.engine,
                GenerationRequest(
                    f"r{time.perf_counter_ns()}-{i}", [1, 2], SamplingParams(max_tokens)
                ),
                ChoiceStream(i, Words()),  # type: ignore[arg-type]
                self.metrics.request(time.perf_counter()),
                ticket,
                self.lifecycle.watch(),
                self.delivery,
            )
            for i in range(n)
        ]
        return Run(generations, ticket, n), ticket

    def stream(self, run: Run) -> EventStream:
        chunks = ChatChunks("chatcmpl-1", 0, "m")
        roles = [chunks.role(g.choice) for g in run.generations]
        streamed = Streamed(run, chunks, roles, include_usage=True, continuous_usage=False)
        return EventStream(streamed, Settings())

    def finished(self, reason: str) -> float:
        labels = {"model_name": "m", "finished_reason": reason}
        return self.registry.get_sample_value("gateway_request_success_total", labels) or 0.0

    def idle(self) -> bool:
        stats = self.engine.stats()
        held = (self.admission.in_flight, self.admission.queued_tokens)
        return stats.running == stats.waiting == 0 and held == (0, 0)


@contextlib.asynccontextmanager
async def started(timeout: float | None = None, **engine: Any) -> AsyncIterator[Fixture]:
    settings = SyntheticSettings(**{"token_seconds": 0.001, **engine})
    running = SyntheticEngine(settings)
    await running.start()
    try:
        yield Fixture(running, Lifecycle(grace_seconds=0.0, request_timeout=timeout))
    finally:
        await running.close()


@pytest.fixture
async def gw() -> AsyncIterator[Fixture]:
    async with started() as made:
        yield made


@pytest.fixture
async def failing() -> AsyncIterator[Fixture]:
    """An engine that fails every request after its first token."""
    async with started(fail_every_nth_request=1) as made:
        yield made


@pytest.fixture
async def slow() -> AsyncIterator[Fixture]:
    """Steps of 10 ms and a 50 ms request deadline."""
    async with started(timeout=0.05, token_seconds=0.01) as made:
        yield made


def data(frame: bytes) -> Any:
    return orjson.loads(frame.removeprefix(b"data: "))


async def test_a_finished_stream_sends_every_frame_then_done(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=3)
    client = Client()
    await gw.stream(run)(SCOPE, client.receive, client.send)
    frames = client.frames()
    assert client.messages[0]["status"] == 200
    assert [data(f)["choices"][0]["delta"].get("content") for f in frames[1:4]] == [
        " w1002",
        " w1003",
        " w1004",
    ]
    assert data(frames[4])["choices"][0]["finish_reason"] == "length"
    assert data(frames[5])["usage"]["completion_tokens"] == 3
    assert frames[6] == b"data: [DONE]"
    assert client.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert (ticket.releases, gw.finished("length")) == (1, 1)
    assert gw.idle()


async def ends_with_an_error_event(gw: Fixture, code: str) -> None:
    """A long stream that fails: its error event, then [DONE], counted once as an error."""
    run, ticket = gw.run(max_tokens=10_000)
    client = Client()
    await gw.stream(run)(SCOPE, client.receive, client.send)
    frames = client.frames()
    assert data(frames[-2])["error"]["code"] == code
    assert frames[-1] == b"data: [DONE]"
    assert (ticket.releases, gw.finished("error")) == (1, 1)
    assert gw.idle()


async def test_a_failed_stream_sends_an_error_event_then_done(failing: Fixture) -> None:
    await ends_with_an_error_event(failing, "engine_error")


async def test_an_anthropic_stream_fails_with_its_error_event_and_no_done(
    failing: Fixture,
) -> None:
    run, ticket = failing.run(max_tokens=10_000)
    events = MessageEvents("msg_1", "m", lambda: 9)
    streamed = Streamed(run, events, events.prelude(3), False, False)
    client = Client()
    await EventStream(streamed, Settings())(SCOPE, client.receive, client.send)
    body = b"".join(m.get("body", b"") for m in client.messages[1:])
    last = body.rstrip(b"\n").split(b"\n\n")[-1]
    name, payload = last.split(b"\n")
    assert name == b"event: error"
    assert orjson.loads(payload.removeprefix(b"data: "))["error"]["type"] == "api_error"
    assert b"[DONE]" not in body and b"message_stop" not in body
    assert (ticket.releases, failing.finished("error")) == (1, 1)
    assert failing.idle()


async def test_a_responses_stream_fails_with_response_failed_and_stores_it(
    failing: Fixture,
) -> None:
    run, ticket = failing.run(max_tokens=10_000)
    stored: list[dict[str, Any]] = []
    request = ResponsesRequest.model_validate({"model": "m", "input": "Hi."})
    events = ResponseEvents(head(request, "resp_1"), stored.append)
    streamed = Streamed(run, events, events.prelude(), True, False)
    client = Client()
    await EventStream(streamed, Settings())(SCOPE, client.receive, client.send)
    names = [frame.split(b"\n")[0] for frame in client.frames()]
    assert names[:2] == [b"event: response.created", b"event: response.in_progress"]
    assert names[-1] == b"event: response.failed"
    last = orjson.loads(client.frames()[-1].split(b"\n")[1].removeprefix(b"data: "))
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "engine_error"
    assert last["response"]["output"][0]["status"] == "incomplete"  # the text it had begun
    assert stored == [last["response"]]
    assert (ticket.releases, failing.finished("error")) == (1, 1)
    assert failing.idle()


class StalledClient(Client):
    """A client that stops reading at its `stall_at`-th body message until `resume` is set."""

    def __init__(self, stall_at: int) -> None:
        super().__init__()
        self.stall_at = stall_at
        self.resume = asyncio.Event()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await super().send(message)
        if sum(m["type"] == "http.response.body" for m in self.messages) == self.stall_at:
            await self.resume.wait()


async def test_a_client_that_stops_reading_gets_what_piled_up_in_one_frame(gw: Fixture) -> None:
    """The engine never waits for it; its tokens wait in order, and go together."""
    run, ticket = gw.run(max_tokens=40)
    client = StalledClient(stall_at=3)  # the role chunk, then two content chunks
    streaming = asyncio.create_task(gw.stream(run)(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.1)  # 1 ms steps: the engine finishes meanwhile
    assert gw.engine.stats().running == 0 and not streaming.done()
    client.resume.set()
    await asyncio.wait_for(streaming, 5)
    contents = [data(f)["choices"][0]["delta"].get("content") for f in client.frames()[1:-3]]
    assert contents[:2] == [" w1002", " w1003"]
    assert "".join(contents) == "".join(f" w{1002 + i}" for i in range(40))
    assert len(contents) < 10  # what piled up left as one or a few frames, not 38
    assert data(client.frames()[-3])["choices"][0]["finish_reason"] == "length"
    assert (ticket.releases, gw.finished("length")) == (1, 1)
    assert gw.idle()


class BrokenClient(StalledClient):
    """Stops reading at `stall_at`, and its connection breaks when the send resumes."""

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await super().send(message)
        if len(self.messages) > self.stall_at:
            raise RuntimeError("the connection broke")


async def test_a_send_that_fails_after_waiting_ends_the_stream_once(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=10_000)
    client = BrokenClient(stall_at=3)
    streaming = asyncio.create_task(gw.stream(run)(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.02)
    client.resume.set()
    await asyncio.wait_for(streaming, 5)
    assert b"data: [DONE]" not in client.frames()
    assert (ticket.releases, gw.finished("abort")) == (1, 1)
    assert gw.idle()


class Server:
    """A server's send: done at once, or waiting on `writable` (flow control)."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent: list[bytes] = []

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await self.writable.wait()
        self.sent.append(message["body"])


def body(frame: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": frame, "more_body": True}


async def test_send_now_is_done_at_once_while_the_client_reads() -> None:
    server = Server()
    assert _send_now(server.send, body(b"a")) is None
    assert server.sent == [b"a"]


async def test_send_now_hands_back_the_rest_of_a_send_that_waits() -> None:
    server = Server()
    server.writable.clear()
    rest = _send_now(server.send, body(b"a"))
    assert rest is not None and server.sent == []
    finishing = asyncio.create_task(rest)
    await asyncio.sleep(0)
    assert not finishing.done()
    server.writable.set()
    await asyncio.wait_for(finishing, 1)
    assert server.sent == [b"a"]


async def test_the_rest_of_a_send_cancelled_cancels_what_it_waits_for() -> None:
    server = Server()
    server.writable.clear()
    rest = _send_now(server.send, body(b"a"))
    assert rest is not None
    finishing = asyncio.create_task(rest)
    await asyncio.sleep(0)
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    assert server.sent == [] and not server.writable._waiters  # Event.wait cleaned up


async def test_send_now_awaits_a_send_that_is_not_a_coroutine() -> None:
    sent: list[bytes] = []

    def send(message: MutableMapping[str, Any]) -> asyncio.Future[None]:
        sent.append(message["body"])
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    rest = _send_now(send, body(b"a"))
    assert rest is not None
    await rest
    assert sent == [b"a"]


@pytest.mark.parametrize("leave_after", [0, 3])
async def test_a_client_that_leaves_aborts_the_request(gw: Fixture, leave_after: int) -> None:
    """Before the first byte (0) or mid-stream (3): no error, nothing left running."""
    run, ticket = gw.run(max_tokens=10_000)
    client = Client(leave_after=leave_after)
    await gw.stream(run)(SCOPE, client.receive, client.send)
    assert b"data: [DONE]" not in client.frames()
    assert ticket.releases == 1
    assert gw.finished("abort") == 1
    assert gw.idle()


async def test_a_stream_past_its_deadline_ends_with_request_timeout(slow: Fixture) -> None:
    await ends_with_an_error_event(slow, "request_timeout")


async def test_a_drain_ends_running_streams_with_shutting_down(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=10_000, n=2)
    client = Client()
    streaming = asyncio.create_task(gw.stream(run)(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.02)
    gw.lifecycle.drain()
    await asyncio.wait_for(streaming, 5)
    frames = client.frames()
    assert data(frames[-2])["error"]["code"] == "shutting_down"
    assert (frames[-1], ticket.releases, gw.finished("error")) == (b"data: [DONE]", 1, 2)
    assert gw.idle()


async def test_a_server_cancellation_is_not_swallowed(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=10_000)
    client = Client()
    streaming = asyncio.create_task(gw.stream(run)(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.02)
    streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming
    assert (ticket.releases, gw.finished("abort")) == (1, 1)
    assert gw.idle()


def whole(run: Run) -> Whole:
    async def body() -> bytes:
        outputs = await run.collect()
        return orjson.dumps({"text": "".join(outputs[0].content)})

    return Whole(run, body)


async def test_a_json_completion_sends_one_body(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=2)
    client = Client()
    await JSONCompletion(whole(run))(SCOPE, client.receive, client.send)
    assert client.messages[0]["status"] == 200
    assert orjson.loads(client.messages[1]["body"]) == {"text": " w1002 w1003"}
    assert (ticket.releases, gw.finished("length")) == (1, 1)
    assert gw.idle()


async def test_a_failed_json_completion_raises_for_the_error_handlers(failing: Fixture) -> None:
    run, ticket = failing.run(max_tokens=5)
    client = Client()
    completion = JSONCompletion(whole(run))
    with pytest.raises(EngineFailure):
        await completion(SCOPE, client.receive, client.send)
    assert (client.messages, ticket.releases, failing.finished("error")) == ([], 1, 1)
    assert failing.idle()


async def test_a_client_that_leaves_a_json_completion_gets_499(gw: Fixture) -> None:
    run, ticket = gw.run(max_tokens=10_000)
    client = Client()
    completion = JSONCompletion(whole(run))
    waiting = asyncio.create_task(completion(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.02)
    client.gone.set()
    with pytest.raises(ClientDisconnected):
        await waiting
    assert (ticket.releases, gw.finished("abort")) == (1, 1)
    assert gw.idle()
