"""Admission control: bounds on requests in flight, on prompt tokens waiting, and on loop lag.

A request holds a `Ticket` from admission until it ends. Its prompt tokens count
as queued until its first token arrives: that is the work the engine has yet to
prefill, which is what makes a burst of long prompts expensive. The event loop's
lag bounds the gateway's own work: past it, the process is saturated, and taking
more would only slow every stream and every health probe down.
"""

from __future__ import annotations

from prometheus_client import Counter

from gateway.errors import Overloaded
from gateway.serving.loop_lag import LoopLag


class Admission:
    def __init__(
        self,
        max_requests: int,
        max_queued_tokens: int,
        retry_after: int,
        rejections: Counter,  # labelled by model name, then reason
        model_name: str,
        *,
        loop_lag: LoopLag | None = None,
        max_loop_lag: float | None = None,  # seconds; None: no bound
    ) -> None:
        self.in_flight = 0
        self.queued_tokens = 0
        self._max_requests = max_requests
        self._max_queued_tokens = max_queued_tokens
        self._retry_after = retry_after
        self._rejected_requests = rejections.labels(model_name, "requests")
        self._rejected_tokens = rejections.labels(model_name, "prompt_tokens")
        self._rejected_lag = rejections.labels(model_name, "event_loop_lag")
        self._loop_lag = loop_lag
        self._max_loop_lag = max_loop_lag

    def check(self) -> None:
        """`Overloaded` (429) if a new request would be refused whatever its prompt: checked
        before any parsing of messages or tokenizing, so that refusing costs little."""
        lag = self._loop_lag
        if lag is not None and self._max_loop_lag is not None and lag.seconds > self._max_loop_lag:
            self._rejected_lag.inc()
            raise Overloaded(
                f"the server is saturated (event loop lag {lag.seconds * 1000:.0f} ms)",
                retry_after=self._retry_after,
            )
        if self.in_flight >= self._max_requests:
            self._rejected_requests.inc()
            raise Overloaded(
                f"the server is at its limit of {self._max_requests} concurrent requests",
                retry_after=self._retry_after,
            )

    def admit(self, prompt_tokens: int) -> Ticket:
        """A ticket for a new request, or `Overloaded` (429) past a bound."""
        self.check()  # again: the loop and the count may have moved while the prompt rendered
        # One request alone may exceed the token bound: refusing it forever would be worse.
        if self.queued_tokens and self.queued_tokens + prompt_tokens > self._max_queued_tokens:
            self._rejected_tokens.inc()
            raise Overloaded(
                "the server has too many prompt tokens waiting to be processed",
                retry_after=self._retry_after,
            )
        self.in_flight += 1
        self.queued_tokens += prompt_tokens
        return Ticket(self, prompt_tokens)


class Ticket:
    """One admitted request's share; both methods are idempotent."""

    __slots__ = ("_admission", "_queued", "_released")

    def __init__(self, admission: Admission, prompt_tokens: int) -> None:
        self._admission = admission
        self._queued = prompt_tokens
        self._released = False

    def started(self) -> None:
        """The first token arrived: the prompt is no longer waiting."""
        self._admission.queued_tokens -= self._queued
        self._queued = 0

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.started()
            self._admission.in_flight -= 1
