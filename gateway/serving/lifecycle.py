"""Draining on shutdown, and per-request deadlines that a drain pulls in.

Each running request has a `Watch`: one timer for its deadline. When the timer
fires, the request's task is cancelled wherever it waits (on the engine, or on a
slow client's send) and the cancellation is turned into a `RequestTimeout` (or,
once draining, an `EngineUnavailable`) that the stream renders as an error
event. No per-token timer or check is needed.

SIGTERM calls `Lifecycle.drain`: `/ready` turns 503, new requests get 503 with
Retry-After, and every running request's deadline moves to at most `grace`
seconds from now.
"""

from __future__ import annotations

import asyncio

from gateway.errors import EngineUnavailable, GatewayError, RequestTimeout


class Lifecycle:
    def __init__(
        self, grace_seconds: float, request_timeout: float | None, retry_after: int = 1
    ) -> None:
        self.draining = False
        self._grace = grace_seconds
        self._retry_after = retry_after  # seconds: another replica may take the retry
        self._timeout = request_timeout
        self._watches: set[Watch] = set()

    def drain(self) -> None:
        """Stop taking requests; those running get `grace` seconds more at most."""
        if self.draining:
            return
        self.draining = True
        drain_deadline = asyncio.get_running_loop().time() + self._grace
        for watch in list(self._watches):
            watch.pull_in(drain_deadline)

    def ensure_open(self) -> None:
        if self.draining:
            raise EngineUnavailable(
                "the server is shutting down", code="shutting_down", retry_after=self._retry_after
            )

    def watch(self) -> Watch:
        return Watch(self)

    def _expiry(self) -> GatewayError:
        if self.draining:
            return EngineUnavailable(
                "the server shut down before the request finished", code="shutting_down"
            )
        return RequestTimeout(f"the request took longer than {self._timeout} s")


class Watch:
    """One request's deadline, armed while the request runs (`with watch:`)."""

    __slots__ = ("_deadline", "_lifecycle", "_task", "_timer", "expired")

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self.expired = False

    def __enter__(self) -> Watch:
        lifecycle = self._lifecycle
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if lifecycle._timeout is not None:
            self._arm(loop.time() + lifecycle._timeout)
        lifecycle._watches.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lifecycle._watches.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def pull_in(self, deadline: float) -> None:
        if self._deadline is None or deadline < self._deadline:
            self._arm(deadline)

    def error(self) -> GatewayError:
        return self._lifecycle._expiry()

    def claims_cancellation(self) -> bool:
        """Whether this cancellation is the deadline's, and so a `GatewayError`."""
        task = self._task
        return self.expired and task is not None and task.uncancel() == 0

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()
