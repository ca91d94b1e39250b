"""One pass per engine step: the requests a step advanced are served in one callback.

An engine puts each request's new tokens into the request's `Generation`, its sink,
during its step. Waking each request's task would cost a task step per request per
engine step; instead the first put of a step schedules one callback, and that pass
hands every pending request's output on (detokenized, framed, written) in turn.

A pass serves at most `SLICE` requests, then leaves the rest to a callback of its
own: between the two the event loop polls its sockets, so a health probe or a new
request waits for one slice, not for a whole step of thousands of streams.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

# Serving one request costs some 10-20 us here, so a slice holds the loop for 1-3 ms.
SLICE = 128


class Pending(Protocol):
    def deliver(self) -> None:
        """Hand on what the engine put since the last pass; must not raise."""


class Delivery:
    """The event loop's one queue of requests with output to hand on."""

    __slots__ = ("_pending", "_scheduled")

    def __init__(self) -> None:
        self._pending: list[Pending] = []
        self._scheduled = False

    def mark(self, request: Pending) -> None:
        """Serve `request` in the next pass; a request is marked at most once per pass."""
        self._pending.append(request)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pass)

    def _pass(self) -> None:
        pending = self._pending
        if len(pending) > SLICE:
            batch, self._pending = pending[:SLICE], pending[SLICE:]
            asyncio.get_running_loop().call_soon(self._pass)
        else:
            batch, self._pending = pending, []
            self._scheduled = False
        for request in batch:
            request.deliver()
