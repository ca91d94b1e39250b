"""A per-request hand-off from an engine's step loop to the request's consumer.

Engines push every token of a step into each request's channel from the event
loop (one `call_soon_threadsafe` per step when the engine runs in a thread), and
the consumer drains everything pending at once: a consumer that fell behind
gets one `TokenDelta` with several ids instead of a backlog of events.

`events()` is what an engine's `generate` returns: closing it before the engine's
last word (the consumer left, or found a stop string) calls the channel's
`on_abandon`, where the engine aborts the request, so no generator of the
engine's own stands between the channel and the consumer on every token.

An engine writes to a `Sink`: a `TokenChannel` when its consumer is in the
same process, or the engine worker's relay (engines/worker/host.py), which
batches every request's step into one message to the gateway's process.

Not thread-safe: call every method on the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Protocol

from engines.base import Finished, GenerationEvent, TokenDelta, TokenLogprob


class Sink(Protocol):
    """Where an engine puts one request's output; `finish` or `fail` is its last word."""

    @property
    def closed(self) -> bool: ...

    def put(self, token_ids: Iterable[int], logprobs: Iterable[TokenLogprob] = ()) -> None: ...

    def finish(self, final: Finished) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class TokenChannel:
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
