"""What chat and text completions share: checks, the choices' engine requests, their
events merged into one sequence, and what a completion hands its HTTP response.

A request with p prompts and n choices is p x n engine requests, choice index
`prompt * n + choice` (OpenAI's order). Each is a `Generation` with its own
stream state, deadline and metrics; they share one admission ticket, released
by the response. Prefix caching makes the n - 1 repeated prompts cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engines.base import Constraint, Engine, EngineLimits, GenerationRequest, SamplingParams
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound
from gateway.openai.bodies import Collected
from gateway.openai.protocol import CompletionBody
from gateway.serving.admission import Admission, Ticket
from gateway.serving.delivery import Delivery
from gateway.serving.generation import Generation, Outlet, Usage
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.metrics import Metrics
from gateway.serving.prompts import PromptRenderer
from gateway.serving.sampling import sampling_params
from gateway.settings import Settings
from gateway.text.streaming import ChoiceStream, Delta

ChoiceFactory = Callable[[int, list[int]], ChoiceStream]  # (index, prompt ids) -> state


class Chunks(Protocol):
    """A streamed completion's frames (`gateway.openai.chunks`, `gateway.anthropic.messages`)."""

    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes: ...

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes: ...

    def usage(self, usage: dict[str, Any]) -> bytes: ...

    def error(self, error: GatewayError) -> bytes:
        """The event that tells the client its stream failed, once it has begun."""
        ...

    def end(self) -> bytes:
        """The stream's last frame, after its usage or its error ([DONE]; may be empty)."""
        ...


class Run:
    """The choices of one request, running."""

    def __init__(self, generations: list[Generation], ticket: Ticket, n: int) -> None:
        self.generations = generations
        self.ticket = ticket
        self._n = n

    def usage(self, *, running: bool = False) -> Usage:
        """Choices of one prompt share it: its tokens count once, as OpenAI counts them."""
        total = Usage(0, 0)
        for index, generation in enumerate(self.generations):
            usage = generation.running_usage if running else generation.usage
            assert usage is not None  # set once the generation has ended
            if index % self._n:
                usage = Usage(0, usage.completion_tokens)
            total += usage
        return total

    def abandon(self) -> None:
        """The client left before any choice ran."""
        for generation in self.generations:
            generation.abandon()

    async def collect(self) -> list[Collected]:
        """Every choice's output, in index order: the deltas a stream would have sent."""
        outputs = [Collected(generation.choice) for generation in self.generations]
        await self.drive(_Collector(outputs))
        return outputs

    async def drive(self, outlet: Outlet) -> None:
        """Every choice to its end, each handing its output to `outlet` as it comes.

        One choice runs in the caller's task. Several wait in a task each, each with
        its own deadline; the first error cancels the others (each aborts its engine
        request) and is raised.
        """
        if len(self.generations) == 1:
            await self.generations[0].drive(outlet)
            return
        tasks = [asyncio.create_task(g.drive(outlet)) for g in self.generations]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)


class _Collector:
    """The `Outlet` of a non-streamed response: each choice's deltas, gathered."""

    busy = False

    def __init__(self, outputs: list[Collected]) -> None:
        self.outputs = outputs  # a run's choices come in index order

    def delta(self, generation: Generation, delta: Delta) -> None:
        self.outputs[generation.choice.index].add(delta)

    async def finished(self, generation: Generation) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Streamed:
    """A completion to stream: its run, its frames, and the frames before any delta."""

    run: Run
    chunks: Chunks
    prelude: Sequence[bytes]
    include_usage: bool
    continuous_usage: bool


@dataclass(frozen=True, slots=True)
class Whole:
    """A completion answered with one JSON body, which `body()` runs the request for."""

    run: Run
    body: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Runner:
    engine: Engine
    prompts: PromptRenderer
    metrics: Metrics
    settings: Settings
    model_names: tuple[str, ...]  # every name clients may send as `model`, the reported one first
    admission: Admission
    lifecycle: Lifecycle
    limits: EngineLimits  # the engine's, capped at `max_model_len` (`lengths.served_limits`)
    delivery: Delivery = field(default_factory=Delivery)
    _sequence: Iterator[int] = field(default_factory=itertools.count, init=False)

    @property
    def model_name(self) -> str:
        return self.model_names[0]

    def check(self, body: CompletionBody) -> None:
        """What can be refused before any tokenizing."""
        self.lifecycle.ensure_open()
        settings = self.settings
        if body.model not in self.model_names:
            raise ModelNotFound(f"The model `{body.model}` does not exist.", param="model")
        if body.n > settings.max_choices:
            raise InvalidRequest(f"'n' must be at most {settings.max_choices}", param="n")
        stops = body.stop_strings
        if len(stops) > settings.max_stop_strings:
            raise InvalidRequest(
                f"at most {settings.max_stop_strings} stop strings are allowed", param="stop"
            )
        if any(not stop or len(stop) > settings.max_stop_chars for stop in stops):
            raise InvalidRequest(
                f"stop strings must have 1 to {settings.max_stop_chars} characters", param="stop"
            )
        self.admission.check()  # a saturated server refuses before rendering anything

    def start(
        self,
        body: CompletionBody,
        request_id: str,
        prompts: list[list[int]],
        constraint: Constraint | None,
        choice: ChoiceFactory,
        arrival: float,
    ) -> Run:
        """`request_id` is the HTTP request's (X-Request-Id): engine ids get a suffix,
        because clients reuse ids (retries) and engines key requests by id.
        `arrival`: `time.perf_counter()` at arrival, where time to first token starts."""
        samplings = [self._sampling(body, ids, constraint) for ids in prompts]
        ticket = self.admission.admit(sum(map(len, prompts)) * body.n)
        generations = []
        for prompt_index, (ids, sampling) in enumerate(zip(prompts, samplings, strict=True)):
            for n in range(body.n):
                request = GenerationRequest(
                    f"{request_id}-{next(self._sequence)}", ids, choice_sampling(sampling, n)
                )
                generations.append(
                    Generation(
                        self.engine,
                        request,
                        choice(prompt_index * body.n + n, ids),
                        self.metrics.request(arrival),
                        ticket,
                        self.lifecycle.watch(),
                        self.delivery,
                    )
                )
        return Run(generations, ticket, body.n)

    def _sampling(
        self, body: CompletionBody, ids: list[int], constraint: Constraint | None
    ) -> SamplingParams:
        return sampling_params(
            body,
            len(ids),
            limits=self.limits,
            settings=self.settings,
            vocab_size=self.prompts.vocab_size,
            eos_token_ids=self.prompts.eos_token_ids,
            constraint=constraint,
        )


def choice_sampling(sampling: SamplingParams, n: int) -> SamplingParams:
    """Choice n's sampling: a seeded request's choices must still differ."""
    if n == 0 or sampling.seed is None:
        return sampling
    return replace(sampling, seed=(sampling.seed + n + 2**63) % 2**64 - 2**63)  # stays int64
