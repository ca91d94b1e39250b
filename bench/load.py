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

    def add(self, record: StreamRecord, window: tuple[float, float], finished: bool) -> None:
        begin, end = window
        times = record.content_times
        if finished and begin <= record.sent < end and times:
            self.ttft.append(times[0] - record.sent)
            self.e2e.append(record.done - record.sent)
            self.requests += 1
            self.prompt_tokens += record.prompt_tokens
            self.completion_tokens += record.completion_tokens
        # Several tokens share a chunk when a client lags; the usage says how many
        # in all, spread evenly over the chunks. Abandoned requests count 1 per chunk.
        per_chunk = record.completion_tokens / len(times) if finished and times else 1.0
        for index, arrived in enumerate(times):
            if begin <= arrived < end:
                self.chunks += 1
                self.tokens += per_chunk
                if index:
                    self.itl.append(arrived - times[index - 1])


class _Stream:
    """One closed-loop client stream in a worker process."""

    def __init__(self, plan: LoadPlan, offset: int, stats: WindowStats) -> None:
        self._plan = plan
        self._offset = offset
        self._stats = stats
        self._connection = Connection(plan.host, plan.port)

    @property
    def current(self) -> StreamRecord | None:
        """The request being read, if any (abandoned ones are counted from it)."""
        return self._connection.current

    async def run(self, start_at: float) -> None:
        plan = self._plan
        await _sleep_until(start_at)
        sent = 0
        try:
            while time.perf_counter() < plan.window[1]:
                body = plan.bodies[(self._offset + sent) % len(plan.bodies)]
                sent += 1
                try:
                    record = await self._connection.stream(plan.path, body)
                except Exception as error:  # the load goes on; errors are counted
                    self._error(error)
                    await asyncio.sleep(0.05)  # no hot loop against a refusing server
                    continue
                self._stats.add(record, plan.window, finished=True)
        finally:
            self._connection.close()

    def _error(self, error: Exception) -> None:
        stats = self._stats
        stats.errors += 1
        if len(stats.error_samples) < MAX_ERROR_SAMPLES:
            stats.error_samples.append(f"{type(error).__name__}: {error}"[:300])


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
    clients = [_Stream(plan, number, stats) for number in streams]
    cpu = asyncio.create_task(_window_cpu(plan.window))
    tasks = [
        asyncio.create_task(client.run(plan.start_at + number * spacing))
        for number, client in zip(streams, clients, strict=True)
    ]
    pending: set[asyncio.Task[None]] = set()
    if tasks:
        timeout = max(0.0, plan.stop_at - time.perf_counter())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()  # closes its connection; what it received still counts below
    stats.unfinished = len(pending)
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        if client.current is not None:
            stats.add(client.current, plan.window, finished=False)
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
