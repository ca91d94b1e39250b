"""An engine's output for one request as an async iterator of events.

    async with contextlib.aclosing(generate(engine, request)) as events:
        async for event in events:
            match event:
                case TokenDelta(token_ids=ids): ...       # new ids, never empty
                case Finished(reason=reason): ...         # always last

For consumers that iterate (the engines' tests, the engine-alone benchmark); the
gateway's own consumer is a `Sink` itself (`gateway/serving/generation.py`). The
`TokenChannel` sink gathers what the engine puts until the consumer asks: a
consumer that fell behind gets one `TokenDelta` with several ids instead of a
backlog of events. Closing the iterator before the engine's last word aborts
the request.

Not thread-safe: call every method on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from engines.base import Engine, Gathered, GenerationEvent, GenerationRequest, TokenDelta


async def generate(engine: Engine, request: GenerationRequest) -> AsyncGenerator[GenerationEvent]:
    """`engine`'s events for `request`; raises `EngineError` if the engine fails it."""
    channel = TokenChannel(logprobs=request.sampling.logprobs is not None)
    channel.on_abandon = await engine.open(request, channel)
    async with contextlib.aclosing(channel.events()) as events:
        async for event in events:
            yield event


class TokenChannel(Gathered):
    """A `Sink` that keeps what the engine put until `events()` hands it on."""

    __slots__ = ("_waiter", "on_abandon")

    def __init__(
        self, logprobs: bool = False, on_abandon: Callable[[], None] | None = None
    ) -> None:
        """`on_abandon`: called once if the consumer closes `events()` before the last word."""
        super().__init__(logprobs)
        self.on_abandon = on_abandon
        self._waiter: asyncio.Future[None] | None = None

    async def events(self) -> AsyncGenerator[GenerationEvent]:
        try:
            while True:
                taken = self._take()
                if taken is not None:
                    yield TokenDelta(*taken)
                elif self._error is not None:
                    raise self._error
                elif self._final is not None:
                    yield self._final
                    return
                else:
                    self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        finally:
            if not self.closed and self.on_abandon is not None:
                self.on_abandon()

    def _changed(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
