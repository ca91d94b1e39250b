"""The two ways a completion leaves: an SSE stream, or one JSON body.

Both release the request's admission ticket however they end, and both abort
the engine's work when the client goes away: a stream through its body
generator's closing, a JSON body through `unless_disconnected`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Protocol

from sse_starlette import EventSourceResponse
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.admission import Ticket
from gateway.chunks import DONE
from gateway.errors import ClientDisconnected, GatewayError, sse_event
from gateway.runs import Run
from gateway.settings import Settings
from gateway.streaming import ChoiceStream, Delta

log = logging.getLogger(__name__)


class Chunks(Protocol):
    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes: ...

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes: ...

    def usage(self, usage: dict[str, Any]) -> bytes: ...


async def collected(run: Run, complete: Awaitable[Response], receive: Receive) -> Response:
    """The non-streamed response; a 499 if the client leaves first. Releases the ticket."""
    try:
        return await unless_disconnected(complete, receive)
    finally:
        run.ticket.release()


async def sse_frames(
    run: Run,
    chunks: Chunks,
    prelude: Sequence[bytes],
    *,
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[bytes]:
    """A run's SSE frames: `prelude` (role or echo frames), deltas as they come, a
    finish frame per choice, the usage frame if asked for, and [DONE]."""
    for frame in prelude:
        yield frame
    try:
        async for generation, delta in run.events():
            usage = run.usage(running=True).body() if continuous_usage else None
            if delta is None:
                yield chunks.finish(generation.choice, usage)
            else:
                yield chunks.delta(generation.choice, delta, usage)
        if include_usage:
            yield chunks.usage(run.usage().body())
    except GatewayError as error:
        yield sse_event(error)
    except Exception:
        # The stream has begun: the error can only travel as an event.
        log.exception("stream failed")
        yield sse_event(GatewayError("internal server error"))
    yield DONE


class EventStream(EventSourceResponse):
    """The SSE response of one completion; its admission ticket is released however it ends.

    The body generator may never start (the client left before the first send),
    and then its own `finally` never runs: this `finally` always does.

    Divergence from sse-starlette: `send_timeout` bounds keep-alive comments only.
    sse-starlette opens a cancel scope around every send, which cost about a tenth
    of the gateway's CPU per streamed token. A client that stops reading still
    fills the transport, so the next keep-alive blocks and times out, and the
    stream ends: a stalled client is dropped after keep-alive + send timeout.
    """

    def __init__(self, frames: AsyncIterator[bytes], ticket: Ticket, settings: Settings) -> None:
        super().__init__(
            frames,
            sep="\n",
            ping=settings.sse_keepalive_seconds,
            send_timeout=settings.send_timeout_seconds,
            # sse-starlette cancels streams on SIGTERM after this long; the drain
            # (gateway/lifecycle.py) ends them with an error event before that.
            shutdown_grace_period=settings.shutdown_grace_seconds + 5,
        )
        self._ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._ticket.release()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if message.get("body", b"")[:1] == b":":  # a keep-alive comment
            await super()._send_with_timeout(send, message)
        else:
            await send(message)


async def unless_disconnected(work: Awaitable[Response], receive: Receive) -> Response:
    """`work`, or a 499 once the client hangs up first: its request is aborted at once.

    Starlette does not cancel a handler whose client left, so without this a
    gone client's non-streamed completion would run on to `max_tokens`.
    """
    task = asyncio.ensure_future(work)

    async def cancel_on_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(cancel_on_disconnect())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this handler itself is being cancelled
        raise ClientDisconnected("the client closed the connection") from None
    finally:
        watcher.cancel()
