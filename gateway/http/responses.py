"""The two ways a completion leaves, each the one owner of its running request.

Once admitted, a request belongs to exactly one of these ASGI responses. It holds
the admission ticket, reads `receive` for the client's disconnect, and releases the
ticket in its own `finally`, however the request ends: finished, failed, the
client gone, past its deadline (`gateway/serving/lifecycle.py`), or cut short by a drain.

- `EventStream`: server-sent events. Its frames are built as the choices' deltas
  come, in the delivery pass of the engine step that made them
  (`gateway/serving/delivery.py`), and written there and then with the server's
  own `send` once the start has passed every middleware: no layer needs a chunk,
  and each layer's wrapper would otherwise run for every one
  (`gateway/http/access_log.py`). The server's send returns at once unless the
  client stopped reading; only then does a frame, and those after it, wait in a task.
- `JSONCompletion`: one JSON body, or a 499 when the client leaves first.

Divergences from sse-starlette, which this replaces on the request path: no task
group per response (one watcher task, and a timer for keep-alives); `send_timeout`
bounds keep-alive comments only. A client that stops reading fills the transport,
so the next keep-alive blocks and times out, and the stream ends: a stalled client
is dropped after keep-alive + send timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import ClientDisconnected, GatewayError
from gateway.http.access_log import Exchange
from gateway.serving.generation import Generation
from gateway.serving.runs import Run, Streamed, Whole
from gateway.settings import Settings
from gateway.text.streaming import Delta

log = logging.getLogger(__name__)

_PING = b": ping\n\n"
_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}
_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    ],
}


class _Owner(Response):
    """A response that owns a running request: its ticket and its client's disconnect."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self._run = run
        self._task: asyncio.Task[Any] | None = None
        self.client_left = False

    def _watch(self, receive: Receive) -> asyncio.Task[None]:
        """A task that cancels the task running the request when the client disconnects."""

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self._cut()

        return asyncio.create_task(watch())

    def _cut(self) -> None:
        self.client_left = True
        if self._task is not None:
            self._task.cancel()

    def _claims(self) -> bool:
        """Whether a cancellation is this response's own (the client left), not the server's."""
        return self.client_left and self._task is not None and self._task.uncancel() == 0


class EventStream(_Owner):
    """The SSE response of one completion: `prelude` frames, deltas as they come, a finish
    frame per choice, the usage frame if asked for, and [DONE]."""

    def __init__(self, streamed: Streamed, settings: Settings) -> None:
        super().__init__(streamed.run)
        self._chunks = streamed.chunks
        self._prelude = streamed.prelude
        self._include_usage = streamed.include_usage
        self._continuous_usage = streamed.continuous_usage
        self._keepalive = settings.sse_keepalive_seconds
        self._send_timeout = settings.send_timeout_seconds
        self._send_body: Callable[[Message], Awaitable[None]] = _unstarted
        self._exchange: Exchange | None = None
        self._sent_bytes = 0  # the body's, for the access log; and to tell a quiet stream
        self._quiet_mark = 0  # `_sent_bytes` at the last keep-alive check
        self._timer: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None
        # While a send waits for a client that is not reading: the frames after it, in order.
        self._backlog: deque[Message] | None = None
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = self._watch(receive)
        try:
            await send(_START)
            self._exchange = Exchange.of(scope)
            self._send_body = self._exchange.send_body if self._exchange is not None else send
            self._arm_keepalive()
            if self.client_left:  # gone while the start was being sent
                self._run.abandon()
                return
            # The body runs in a task of its own: every token resumes only its few frames,
            # not the whole await chain of middleware and routing above this call. A
            # cancellation of this task (the server's) reaches it through the await.
            body = asyncio.get_running_loop().create_task(self._body(self._send_body))
            self._task = body  # what the watcher cancels
            try:
                await body
            except asyncio.CancelledError:
                server = asyncio.current_task()
                # Cancelled before its first step, by the watcher: the client left.
                if not self.client_left or (server is not None and server.cancelling()):
                    raise
                self._run.abandon()
        finally:
            watcher.cancel()
            if self._timer is not None:
                self._timer.cancel()
            if self._pinging is not None:
                self._pinging.cancel()
            if self._draining is not None:
                self._draining.cancel()
            if self._exchange is not None:
                self._exchange.body_bytes += self._sent_bytes
            self._run.ticket.release()

    async def _body(self, send_body: Callable[[Message], Awaitable[None]]) -> None:
        try:
            await self._stream()
            await send_body(_END)
        except asyncio.CancelledError:
            if not self._claims():
                raise

    async def _stream(self) -> None:
        for frame in self._prelude:
            await self._emit(frame)
        try:
            await self._run.drive(self)
            if self._include_usage:
                await self._emit(self._chunks.usage(self._run.usage().body()))
        except GatewayError as error:
            await self._emit(self._chunks.error(error))
        except Exception:
            # The stream has begun: the error can only travel as an event.
            log.exception("stream failed")
            await self._emit(self._chunks.error(GatewayError("internal server error")))
        end = self._chunks.end()
        if end:
            await self._emit(end)

    @property
    def busy(self) -> bool:
        return self._backlog is not None

    def delta(self, generation: Generation, delta: Delta) -> None:
        usage = self._run.usage(running=True).body() if self._continuous_usage else None
        self._write(self._chunks.delta(generation.choice, delta, usage))

    async def finished(self, generation: Generation) -> None:
        usage = self._run.usage(running=True).body() if self._continuous_usage else None
        await self._emit(self._chunks.finish(generation.choice, usage))

    async def _emit(self, frame: bytes) -> None:
        """`frame` after every frame before it, waiting while the client does not read."""
        self._write(frame)
        draining = self._draining
        if draining is not None and not draining.done():
            await draining

    def _write(self, frame: bytes) -> None:
        """`frame` now; or, while a send waits for the client, after the frames queued."""
        self._sent_bytes += len(frame)
        message: Message = {"type": "http.response.body", "body": frame, "more_body": True}
        if self._backlog is not None:
            self._backlog.append(message)
            return
        rest = _send_now(self._send_body, message)
        if rest is not None:
            self._backlog = deque()
            self._draining = asyncio.get_running_loop().create_task(self._drain(rest))

    async def _drain(self, rest: Coroutine[Any, Any, None]) -> None:
        backlog = self._backlog
        assert backlog is not None
        try:
            await rest
            while backlog:
                await self._send_body(backlog.popleft())
        except Exception:  # a server's send fails only on a broken connection: end the stream
            log.exception("sending a frame failed")
            self._cut()
            return
        self._backlog = None
        for generation in self._run.generations:
            generation.resume()

    def _arm_keepalive(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._keepalive, self._on_quiet)

    def _on_quiet(self) -> None:
        """A keep-alive period passed: a comment if nothing else was sent meanwhile."""
        if self._sent_bytes != self._quiet_mark:
            self._quiet_mark = self._sent_bytes
            self._arm_keepalive()
        else:
            self._timer = None
            self._pinging = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._emit(_PING)
        except TimeoutError:
            log.info("dropped a client that read nothing for %.0f s", self._send_timeout)
            self._cut()
        except Exception:  # the stream ended meanwhile: nothing to keep alive
            return
        else:
            self._quiet_mark = self._sent_bytes
            self._arm_keepalive()


def _send_now(
    send: Callable[[Message], Awaitable[None]], message: Message
) -> Coroutine[Any, Any, None] | None:
    """Runs `send(message)` until it first waits: None if it is done, else what finishes it.

    An eager task's first step, without the task. The server's send waits only for a
    client that is not reading (flow control), so nearly always it is done at once, and
    a delivery pass writes every stream's frame with no task woken.
    """
    sending = send(message)
    if not isinstance(sending, Coroutine):
        return _awaiting(sending)
    try:
        waiting = sending.send(None)
    except StopIteration:
        return None
    return _finish(sending, waiting)


async def _finish(sending: Coroutine[Any, Any, None], waiting: Any) -> None:
    """The rest of a send that `_send_now` began: `waiting` is what it yielded (a future,
    or None for a bare turn of the loop), as a task would have waited for it."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                # Taken over as a task takes what its coroutine yields: awaiting a future
                # still marked as handed to a task is an error.
                waiting._asyncio_future_blocking = False
                await waiting
        except BaseException as error:  # cancelled, or what it waited for failed: its turn
            resume = functools.partial(sending.throw, error)
        else:
            resume = functools.partial(sending.send, None)
        try:
            waiting = resume()
        except StopIteration:
            return


async def _awaiting(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _unstarted(message: Message) -> None:
    raise RuntimeError("a frame was emitted before the response started")


class JSONCompletion(_Owner):
    """The non-streamed response of one completion; a 499 if the client leaves first.

    Starlette does not cancel a handler whose client left, so without the watcher a
    gone client's non-streamed completion would run on to `max_tokens`.
    """

    def __init__(self, whole: Whole) -> None:
        super().__init__(whole.run)
        self._body = whole.body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._task = asyncio.current_task()
        watcher = self._watch(receive)
        try:
            body = await self._body()
        except asyncio.CancelledError:
            if not self._claims():
                raise
            raise ClientDisconnected("the client closed the connection") from None
        finally:
            watcher.cancel()
            self._run.ticket.release()
        await Response(body, media_type="application/json")(scope, receive, send)


def respond(completion: Streamed | Whole, settings: Settings) -> Response:
    """The response that owns `completion` from here on."""
    if isinstance(completion, Streamed):
        return EventStream(completion, settings)
    return JSONCompletion(completion)
