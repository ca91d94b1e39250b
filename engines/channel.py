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
from collections.abc import AsyncGenerator, Callable, Iterable

from engines.base import (
    Engine,
    Finished,
    GenerationEvent,
    GenerationRequest,
    TokenDelta,
    TokenLogprob,
)


async def generate(engine: Engine, request: GenerationRequest) -> AsyncGenerator[GenerationEvent]:
    """`engine`'s events for `request`; raises `EngineError` if the engine fails it."""
    channel = TokenChannel(logprobs=request.sampling.logprobs is not None)
    channel.on_abandon = await engine.open(request, channel)
    async with contextlib.aclosing(channel.events()) as events:
        async for event in events:
            yield event


class TokenChannel:
    """A `Sink` that keeps what the engine put until `events()` hands it on."""

    __slots__ = ("_error", "_final", "_logprobs", "_tokens", "_waiter", "on_abandon")

    def __init__(
        self, logprobs: bool = False, on_abandon: Callable[[], None] | None = None
    ) -> None:
        """`logprobs`: the request asked for them, so every `put` brings one per token.
        `on_abandon`: called once if the consumer closes `events()` before the last word."""
        self.on_abandon = on_abandon
        self._tokens: list[int] = []
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._final: Finished | None = None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """True once the engine has said its last word for this request."""
        return self._final is not None or self._error is not None

    def put(self, token_ids: Iterable[int], logprobs: Iterable[TokenLogprob] = ()) -> None:
        self._tokens.extend(token_ids)
        if self._logprobs is not None:
            self._logprobs.extend(logprobs)
        self._wake()

    def finish(self, final: Finished) -> None:
        if not self.closed:
            self._final = final
            self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.closed:
            self._error = error
            self._wake()

    async def events(self) -> AsyncGenerator[GenerationEvent]:
        try:
            while True:
                if self._tokens:
                    tokens, self._tokens = self._tokens, []
                    logprobs = self._logprobs
                    if logprobs is not None:
                        self._logprobs = []
                    yield TokenDelta(tokens, logprobs)
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

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
