"""How late the event loop runs what is due: the one figure that says the process is saturated.

A timer asks to wake every `interval`; how much later than that it actually wakes
is the time every ready callback (a chunk to send, a `/health` probe) waits for the
loop. Admission refuses new work while the smoothed lag is past its bound, so the
requests already admitted, and the probes of an orchestrator, keep a loop that
answers (see `gateway/serving/admission.py`).
"""

from __future__ import annotations

import asyncio
import contextlib

# Each sample weighs this much: a lone stall (a GC pause, a long tokenization)
# moves the figure by a fifth of itself, a sustained lag reaches it in a few samples.
_WEIGHT = 0.2


class LoopLag:
    """The event loop's smoothed lag in seconds, sampled every `interval` while `run` runs."""

    def __init__(self, interval: float = 0.02) -> None:
        self.seconds = 0.0
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def observe(self, late: float) -> None:
        self.seconds += _WEIGHT * (max(late, 0.0) - self.seconds)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self.observe(loop.time() - due)
