"""One choice's run through the engine: deltas handed to a sink, usage and metrics at the end.

`Generation.drive` reads the engine's events in the caller's task and hands each
delta straight to the response's `Sink` (which frames and sends it, or collects
it): no generator stands between the engine and the wire. Every way out closes
the engine's event iterator (`aclosing`), which aborts the request in the engine
if it is still running: a stop string was matched, the client disconnected (the
task is cancelled), the deadline passed (`Watch`), or an error was raised.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from engines.base import (
    Engine,
    EngineError,
    EngineRequestError,
    Finished,
    FinishReason,
    GenerationRequest,
)
from gateway.errors import EngineFailure, EngineUnavailable, GatewayError, InvalidRequest
from gateway.serving.admission import Ticket
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


class Sink(Protocol):
    """Where a response puts its choices' output as it comes."""

    async def delta(self, generation: Generation, delta: Delta) -> None: ...

    async def finished(self, generation: Generation) -> None: ...


class Generation:
    def __init__(
        self,
        engine: Engine,
        request: GenerationRequest,
        choice: ChoiceStream,
        metrics: RequestMetrics,
        ticket: Ticket,
        watch: Watch,
    ) -> None:
        self.choice = choice
        self.usage: Usage | None = None  # set once the generation has finished
        self._finished: Finished | None = None  # the engine's last word, once it came
        self._engine = engine
        self._request = request
        self._metrics = metrics
        self._ticket = ticket
        self._watch = watch

    @property
    def running_usage(self) -> Usage:
        """Usage so far, for `continuous_usage_stats`; once finished, the engine's own count
        (with the stop token it generated and did not send), as the final usage has it."""
        finished = self._finished
        completion = self.choice.tokens if finished is None else finished.completion_tokens
        return Usage(len(self._request.prompt_token_ids), completion)

    async def drive(self, sink: Sink) -> None:
        """Run the choice to its end, handing what the client may see to `sink`.

        Raises a `GatewayError` on failure. The admission ticket learns of the first
        token; the response that owns the ticket releases it.
        """
        outcome = FinishReason.ABORT  # unless it finishes or fails: the consumer went away
        try:
            await self._deliver(sink)
            await sink.finished(self)
        except EngineError as error:
            outcome = FinishReason.ERROR
            raise self._engine_error(error) from error
        except GatewayError:
            outcome = FinishReason.ERROR
            raise
        finally:
            self._record(self._finished, self.choice.finish_reason or outcome)

    async def _deliver(self, sink: Sink) -> None:
        """The engine's events into the choice, and its deltas to `sink`, until it ends.

        The deadline cancels the task wherever it waits (`Watch`): that cancellation
        is raised as the deadline's error.
        """
        choice, metrics, watch = self.choice, self._metrics, self._watch
        try:
            with watch:
                async with aclosing(self._engine.generate(self._request)) as events:
                    async for event in events:
                        if isinstance(event, Finished):
                            self._finished = event
                            delta = self._finish(event)
                        else:
                            if not choice.tokens:
                                self._ticket.started()
                            metrics.delivered()
                            delta = choice.push(event.token_ids, event.logprobs)
                        if delta:
                            await sink.delta(self, delta)
                        if choice.finish_reason is not None:
                            return  # closing `events` aborts a request a stop string ended
        except asyncio.CancelledError:
            if not watch.claims_cancellation():
                raise
            raise watch.error() from None
        raise EngineFailure("the engine ended the request without finishing it")

    def _finish(self, event: Finished) -> Delta:
        if event.reason is FinishReason.ABORT:
            raise EngineUnavailable("the engine aborted the request")
        return self.choice.finish(event.reason)

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
