"""The engine alone: `TransformersEngine` in this process, N closed-loop streams of `generate()`.

This is the throughput the gateway is held against: no HTTP, no text, no
other work for the interpreter than the engine's own and N cheap consumers.
The streams get the gateway's own prompt ids, without stop ids (EOS off).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.gpu import log
from bench.gpu.window import Timing, Window, window_cpu
from bench.gpu.workload import Workload
from bench.load import ClosedLoopStream, WindowStats, run_streams
from bench.sse_client import StreamRecord


async def run_engine(
    model_dir: Path, settings: Any, workload: Workload, concurrencies: list[int], timing: Timing
) -> tuple[list[Window], float]:
    """Starts the engine, measures one window per concurrency, closes it; and its load time."""
    from engines.transformers import TransformersEngine

    engine = TransformersEngine(model_dir, settings)
    started = time.monotonic()
    await engine.start()
    load_s = time.monotonic() - started
    log(f"engine started in {load_s:.1f}s: {engine.limits()}")
    windows = []
    try:
        for streams in concurrencies:
            if not timing.room_for(15):
                log(f"engine n={streams}: skipped, too little time left")
                continue
            window = await measure_engine(engine, workload, streams, timing)
            log(f"ENGINE n={streams}: {json.dumps(window.summary())}")
            windows.append(window)
    finally:
        await engine.close()
        del engine
        _free_memory()
    return windows, load_s


async def measure_engine(engine: Any, workload: Workload, streams: int, timing: Timing) -> Window:
    start = time.perf_counter()
    edges = timing.edges(start)
    stats = WindowStats()
    clients: list[ClosedLoopStream] = [
        _EngineStream(engine, workload, number, edges, stats) for number in range(streams)
    ]
    # Stopped at the window's end (`stop_at`), as the gateway's clients are: requests cut.
    running = asyncio.create_task(run_streams(clients, [start] * streams, edges[1], stats))
    # The CPU is sampled in a thread that sleeps through the window: the loop runs on.
    cpu = await asyncio.to_thread(window_cpu, os.getpid(), *edges)
    await running
    await _wait_idle(engine)
    return Window("engine", streams, timing.window, stats, cpu)


class _EngineStream(ClosedLoopStream):
    """A stream of `generate()` calls, each recorded as an HTTP client records a response."""

    def __init__(
        self,
        engine: Any,
        workload: Workload,
        number: int,
        window: tuple[float, float],
        stats: WindowStats,
    ) -> None:
        super().__init__(window, stats)
        self._engine = engine
        self._workload = workload
        self._number = number
        self._current: StreamRecord | None = None

    @property
    def current(self) -> StreamRecord | None:
        return self._current

    async def send(self, number: int) -> StreamRecord:
        from engines.base import GenerationRequest, SamplingParams, TokenDelta
        from engines.channel import generate

        prompt, max_tokens = self._workload.request(self._number, number)
        sampling = SamplingParams(max_tokens, temperature=0.0, stop_token_ids=frozenset())
        request = GenerationRequest(f"s{self._number}-{number}", prompt.ids, sampling)
        record = self._current = StreamRecord(sent=time.perf_counter())
        # Closing the events early (the window's end cancels this) aborts the request.
        async with contextlib.aclosing(generate(self._engine, request)) as events:
            async for event in events:
                now = time.perf_counter()
                if isinstance(event, TokenDelta):
                    # One entry per token, not per delta: a request cut at the window's
                    # end counts one token per entry, so its count stays exact.
                    record.content_times.extend([now] * len(event.token_ids))
                    continue
                record.done = now
                record.prompt_tokens = event.prompt_tokens
                record.completion_tokens = event.completion_tokens
                record.finish_reason = event.reason.value
        self._current = None
        return record


async def _wait_idle(engine: Any) -> None:
    """Until the requests cut at the window's end have left (a step or two)."""
    for _ in range(300):
        stats = engine.stats()
        if stats.running == 0 and stats.waiting == 0:
            return
        await asyncio.sleep(0.1)


def _free_memory() -> None:
    """Gives the closed engine's memory back before the gateway's process loads the model."""
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
