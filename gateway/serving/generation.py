"""One choice's run through the engine: deltas handed to an outlet, usage and metrics at the end.

A `Generation` is the engine's sink for its request (`engines.base.Sink`). What the
engine puts in a step is handed on in that step's delivery pass
(`gateway/serving/delivery.py`): pushed into the choice's `ChoiceStream`, and its
delta given to the response's `Outlet`, which frames and writes it there and then,
or collects it. The response's task waits only for the end: `drive` returns once
the choice has finished, and every way out (a stop string, the client gone (the
task is cancelled), the deadline passed (`Watch`), an error) aborts the engine's
request if it is still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engines.base import (
    Engine,
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    Gathered,
    GenerationRequest,
)
from gateway.errors import EngineFailure, EngineUnavailable, GatewayError, InvalidRequest
from gateway.serving.admission import Ticket
from gateway.serving.delivery import Delivery
from gateway.serving.lifecycle import Watch
from gateway.serving.metrics import RequestMetrics
from gateway.text.streaming import ChoiceStream, Delta


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def body(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


class Outlet(Protocol):
    """Where a response puts its choices' output as it comes."""

    @property
    def busy(self) -> bool:
        """A write waits for the client: output is held back, and goes together once the
        outlet calls each generation's `resume`."""
        ...

    def delta(self, generation: Generation, delta: Delta) -> None:
        """Called in a delivery pass, where nothing may wait: write now, or queue."""

    async def finished(self, generation: Generation) -> None: ...


class Generation(Gathered):
    def __init__(
        self,
        engine: Engine,
        request: GenerationRequest,
        choice: ChoiceStream,
        metrics: RequestMetrics,
        ticket: Ticket,
        watch: Watch,
        delivery: Delivery,
    ) -> None:
        super().__init__(request.sampling.logprobs is not None)
        self.choice = choice
        self.usage: Usage | None = None  # set once the generation has finished
        self._engine = engine
        self._request = request
        self._metrics = metrics
        self._ticket = ticket
        self._watch = watch
        self._delivery = delivery
        self._finished: Finished | None = None  # the engine's last word, once handed on
        self._marked = False  # queued for the next delivery pass
        self._outlet: Outlet | None = None  # set while the choice runs
        self._ended: asyncio.Future[None] | None = None  # resolved when the choice ends
        self._abort: Callable[[], None] | None = None  # the engine's, while it runs the request

    @property
    def running_usage(self) -> Usage:
        """Usage so far, for `continuous_usage_stats`; once finished, the engine's own count
        (with the stop token it generated and did not send), as the final usage has it."""
        finished = self._finished
        completion = self.choice.tokens if finished is None else finished.completion_tokens
        return Usage(len(self._request.prompt_token_ids), completion)

    async def drive(self, outlet: Outlet) -> None:
        """Run the choice to its end, handing what the client may see to `outlet`.

        Raises a `GatewayError` on failure. The admission ticket learns of the first
        token; the response that owns the ticket releases it.
        """
        outcome = FinishReason.ABORT  # unless it finishes or fails: the consumer went away
        try:
            await self._run(outlet)
            await outlet.finished(self)
        except EngineError as error:
            outcome = FinishReason.ERROR
            raise self._engine_error(error) from error
        except GatewayError:
            outcome = FinishReason.ERROR
            raise
        finally:
            self._record(self._finished, self.choice.finish_reason or outcome)

    async def _run(self, outlet: Outlet) -> None:
        """Open the request in the engine and wait for the choice's end.

        The deadline cancels the task wherever it waits (`Watch`): that cancellation
        is raised as the deadline's error.
        """
        self._outlet = outlet
        ended = self._ended = asyncio.get_running_loop().create_future()
        watch = self._watch
        try:
            with watch:
                self._abort = await self._engine.open(self._request, self)
                await ended
        except asyncio.CancelledError:
            if not watch.claims_cancellation():
                raise
            raise watch.error() from None
        finally:
            self._outlet = None  # whatever the engine still puts goes nowhere
            if self._abort is not None and not self.closed:
                self._abort()  # a stop string ended it, or its consumer went away

    # The engine's side: what it puts in its step is gathered (`Gathered`), then ...

    def _changed(self) -> None:
        if not self._marked and self._outlet is not None:
            self._marked = True
            self._delivery.mark(self)

    def resume(self) -> None:
        """The outlet is no longer busy: what was held back goes in the next pass."""
        if self._tokens or self.closed:
            self._changed()

    # ... handed on in the step's delivery pass.

    def deliver(self) -> None:
        """What the engine put since the last pass, into the choice and on to the outlet;
        the choice's end (or a failure, raised) resolves `drive`'s wait."""
        self._marked = False
        ended, outlet = self._ended, self._outlet
        if ended is None or outlet is None or ended.done():
            return  # the choice ended meanwhile
        if outlet.busy:
            return  # held, so that it leaves in one delta once the client reads again
        try:
            self._hand_on(outlet)
        except Exception as error:  # raised where `drive` waits
            ended.set_exception(error)
            return
        if self.choice.finish_reason is not None:
            ended.set_result(None)

    def _hand_on(self, outlet: Outlet) -> None:
        choice = self.choice
        taken = self._take()
        if taken is not None:
            if not choice.tokens:
                self._ticket.started()
            self._metrics.delivered()
            delta = choice.push(*taken)
            if delta:
                outlet.delta(self, delta)
        if choice.finish_reason is not None:
            return  # a stop string ended it: whatever else the engine said is moot
        if self._error is not None:
            raise self._error
        final = self._final
        if final is not None:
            if final.reason is FinishReason.ABORT:
                raise EngineUnavailable("the engine aborted the request")
            self._finished = final
            delta = choice.finish(final.reason)
            if delta:
                outlet.delta(self, delta)

    def _engine_error(self, error: EngineError) -> GatewayError:
        if isinstance(error, EngineRequestError):
            return InvalidRequest(str(error))
        if not self._engine.healthy():
            return EngineUnavailable(f"the engine is unavailable: {error}")
        return EngineFailure(f"the engine failed the request: {error}")

    def abandon(self) -> None:
        """The client left before the choice ran: counted as an abort, like any other."""
        self._record(None, FinishReason.ABORT)

    def _record(self, finished: Finished | None, reason: FinishReason) -> None:
        prompt_tokens = len(self._request.prompt_token_ids)
        if finished is not None:
            self.usage = Usage(prompt_tokens, finished.completion_tokens, finished.cached_tokens)
        else:  # stopped by a stop string, or cut off: count what was delivered
            self.usage = Usage(prompt_tokens, self.choice.tokens)
        # Only the engine knows how long a request queued: none for one cut short.
        queue_seconds = finished.queue_seconds if finished is not None else None
        self._metrics.finished(reason, prompt_tokens, self.usage.completion_tokens, queue_seconds)
