"""Closed-loop streaming load from several client processes, measured in a time window.

Each client process runs its own event loop (uvloop when installed) with its
share of the streams; each stream sends a request, reads it to the end and at
once sends the next, over one kept-alive connection. Streams start spread over
a ramp, then a warm-up passes, then a measured window: only what happens inside
the window counts. After the window no stream starts a request; those running
finish (bounded by `stop_at`), so that every request with chunks in the window
has reported its usage, and each chunk's token count is known.

All timestamps are `time.perf_counter()`, which is CLOCK_MONOTONIC on Linux and
therefore comparable between processes: the parent sets the window once for all.

The closed loop and the window's accounting (`ClosedLoopStream`, `run_streams`,
`WindowStats`) serve an engine called in-process too (bench/gpu), so that its
figures and the gateway's are counted by one rule.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.sse_client import Connection, StreamRecord

MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class LoadPlan:
    host: str
    port: int
    path: str
    streams: int
    bodies: tuple[bytes, ...]  # cycled; each stream starts at its own offset
    start_at: float  # the first stream starts here; the others over `ramp_seconds`
    ramp_seconds: float
    window: tuple[float, float]  # [begin, end): what counts
    stop_at: float  # requests still running then are abandoned
    # Each stream's first request, when given (cycled by stream number): lengths
    # that differ stagger streams that all start at once, instead of a ramp.
    first_bodies: tuple[bytes, ...] = ()


@dataclass(slots=True)
class WindowStats:
    """One client process's (or, merged, all clients') view of the window."""

    ttft: array[float] = field(default_factory=lambda: array("d"))  # of requests sent in it
    itl: array[float] = field(default_factory=lambda: array("d"))  # gaps ending in it
    e2e: array[float] = field(default_factory=lambda: array("d"))  # of requests sent in it
    tokens: float = 0.0  # tokens of the content chunks that arrived in it
    chunks: int = 0  # content chunks that arrived in it
    requests: int = 0  # requests sent in it and completed
    prompt_tokens: int = 0  # of those requests, by their usage
    completion_tokens: int = 0  # of those requests, by their usage
    unfinished: int = 0  # requests abandoned at `stop_at`
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the client processes' own CPU during the window
    finish_reasons: dict[str, int] = field(default_factory=dict)  # of `requests`

    def merge(self, other: WindowStats) -> None:
        self.ttft.extend(other.ttft)
        self.itl.extend(other.itl)
        self.e2e.extend(other.e2e)
        self.tokens += other.tokens
        self.chunks += other.chunks
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.unfinished += other.unfinished
        self.errors += other.errors
        room = MAX_ERROR_SAMPLES - len(self.error_samples)
        self.error_samples.extend(other.error_samples[:room])
        self.cpu_seconds += other.cpu_seconds
        for reason, count in other.finish_reasons.items():
            self.finish_reasons[reason] = self.finish_reasons.get(reason, 0) + count

    def count_error(self, error: Exception) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{type(error).__name__}: {error}"[:300])

    def add(self, record: StreamRecord, window: tuple[float, float], finished: bool) -> None:
        begin, end = window
        times = record.content_times
        sent_in_window = begin <= record.sent < end
        if sent_in_window and times:  # its first token came, whether it finished or not
            self.ttft.append(times[0] - record.sent)
        if finished and sent_in_window and times:
            self.e2e.append(record.done - record.sent)
            self.requests += 1
            self.prompt_tokens += record.prompt_tokens
            self.completion_tokens += record.completion_tokens
            reason = record.finish_reason or "none"
            self.finish_reasons[reason] = self.finish_reasons.get(reason, 0) + 1
        # Several tokens share a chunk when a client lags; the usage says how many
        # in all, spread evenly over the chunks. Abandoned requests count 1 per chunk.
        per_chunk = record.completion_tokens / len(times) if finished and times else 1.0
        for index, arrived in enumerate(times):
            if begin <= arrived < end:
                self.chunks += 1
                self.tokens += per_chunk
                if index:
                    self.itl.append(arrived - times[index - 1])


class ClosedLoopStream:
    """One closed-loop stream: sends a request, reads it to the end, sends the next.

    It stops sending when the window ends. Subclasses say how a request is sent
    (`send`) and which one is being read (`current`), so that an engine called
    in-process is counted exactly as an HTTP client is.
    """

    def __init__(self, window: tuple[float, float], stats: WindowStats) -> None:
        self.window = window  # [begin, end): what counts
        self._stats = stats

    @property
    def current(self) -> StreamRecord | None:
        """The request being read, if any (abandoned ones are counted from it)."""
        raise NotImplementedError

    async def send(self, number: int) -> StreamRecord:
        """Sends this stream's request `number` (0, 1, ...) and reads it to the end."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the stream holds, once it stops."""

    async def run(self, start_at: float) -> None:
        await _sleep_until(start_at)
        sent = 0
        try:
            while time.perf_counter() < self.window[1]:
                sent += 1
                try:
                    record = await self.send(sent - 1)
                except Exception as error:  # the load goes on; errors are counted
                    self._stats.count_error(error)
                    # As the OpenAI SDK retries: after Retry-After when the server gives
                    # one; else a short pause, so that a refusing server gets no hot loop.
                    await asyncio.sleep(getattr(error, "retry_after", None) or 0.05)
                    continue
                self._stats.add(record, self.window, finished=True)
        finally:
            self.close()


async def run_streams(
    streams: list[ClosedLoopStream], start_times: list[float], stop_at: float, stats: WindowStats
) -> None:
    """Runs the streams until they stop or `stop_at`, then counts what the abandoned ones got."""
    tasks = [
        asyncio.create_task(stream.run(start))
        for stream, start in zip(streams, start_times, strict=True)
    ]
    pending: set[asyncio.Task[None]] = set()
    if tasks:
        timeout = max(0.0, stop_at - time.perf_counter())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()  # ends its request; what it received still counts below
    stats.unfinished = len(pending)
    await asyncio.gather(*tasks, return_exceptions=True)
    for stream in streams:
        if stream.current is not None:
            stats.add(stream.current, stream.window, finished=False)


class _Stream(ClosedLoopStream):
    """One closed-loop HTTP client stream in a worker process."""

    def __init__(self, plan: LoadPlan, offset: int, stats: WindowStats) -> None:
        super().__init__(plan.window, stats)
        self._plan = plan
        self._offset = offset
        self._connection = Connection(plan.host, plan.port)

    @property
    def current(self) -> StreamRecord | None:
        return self._connection.current

    async def send(self, number: int) -> StreamRecord:
        plan = self._plan
        if number == 0 and plan.first_bodies:
            body = plan.first_bodies[self._offset % len(plan.first_bodies)]
        else:
            body = plan.bodies[(self._offset + number) % len(plan.bodies)]
        return await self._connection.stream(plan.path, body)

    def close(self) -> None:
        self._connection.close()


def run_worker(plan: LoadPlan, index: int, processes: int) -> WindowStats:
    """A client process's whole run (the target of the process pool)."""
    streams = range(index, plan.streams, processes)  # this process's share
    return _run(_worker(plan, list(streams)))


def _run(main: Coroutine[Any, Any, WindowStats]) -> WindowStats:
    try:
        import uvloop  # the cheaper loop, when installed (uvicorn[standard] brings it)
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _worker(plan: LoadPlan, streams: list[int]) -> WindowStats:
    stats = WindowStats()
    spacing = plan.ramp_seconds / max(1, plan.streams)
    clients: list[ClosedLoopStream] = [_Stream(plan, number, stats) for number in streams]
    cpu = asyncio.create_task(_window_cpu(plan.window))
    starts = [plan.start_at + number * spacing for number in streams]
    await run_streams(clients, starts, plan.stop_at, stats)
    stats.cpu_seconds = await cpu
    return stats


async def _window_cpu(window: tuple[float, float]) -> float:
    await _sleep_until(window[0])
    began = time.process_time()
    await _sleep_until(window[1])
    return time.process_time() - began


async def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


class ClientPool:
    """Client processes, started once and reused for every load level."""

    def __init__(self, processes: int) -> None:
        import multiprocessing

        self.processes = processes
        # spawn, not fork: the parent may hold threads (tokenizers, urllib) by then.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=context)
        for future in [self._pool.submit(_ready) for _ in range(processes)]:
            future.result()  # the processes exist and have imported this module

    def run(
        self, plan: LoadPlan, on_window: Callable[[float, float], None] | None = None
    ) -> WindowStats:
        """Runs `plan` on every process; `on_window(begin, end)` runs in between."""
        futures = [
            self._pool.submit(run_worker, plan, index, self.processes)
            for index in range(self.processes)
        ]
        if on_window is not None:
            on_window(*plan.window)
        merged = WindowStats()
        for future in futures:
            merged.merge(future.result())
        return merged

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ready() -> bool:
    return True
