"""What one measured window saw, on either path, and the CPU its process spent meanwhile.

Both paths count with `bench.load.WindowStats`, so the ratio compares tokens
counted by one rule. CPU is read per thread from /proc: the engine's manager
thread and the event loop share one interpreter, and their shares explain the
ratio (docs/gpu-embedded.md, "Reading").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gpu import elapsed
from bench.load import WindowStats
from bench.report import ms, percentile
from bench.server import thread_cpu_seconds


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float  # seconds before each window
    window: float  # seconds measured
    deadline: float  # seconds for the whole benchmark, from its start

    def edges(self, start: float) -> tuple[float, float]:
        """The window's [begin, end) for streams that start at `start` (perf_counter)."""
        begin = start + self.warmup
        return begin, begin + self.window

    def room_for(self, extra: float) -> bool:
        """Whether one more window, and `extra` seconds around it, end before the deadline."""
        return elapsed() + self.warmup + self.window + extra < self.deadline


@dataclass(slots=True)
class Window:
    path: str  # "engine" or "gateway"
    streams: int
    seconds: float
    stats: WindowStats
    cpu: dict[str, Any]  # from `window_cpu`
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tok_per_s(self) -> float:
        return self.stats.tokens / self.seconds

    def ttft_ms(self, q: float) -> float | None:
        value = ms(percentile(self.stats.ttft, q))
        return None if math.isnan(value) else round(value, 1)

    def summary(self) -> dict[str, Any]:
        stats = self.stats
        per_request = stats.completion_tokens / stats.requests if stats.requests else 0.0
        per_chunk = stats.tokens / stats.chunks if stats.chunks else None
        return {
            "path": self.path,
            "streams": self.streams,
            "seconds": self.seconds,
            "tokens": round(stats.tokens, 1),
            "tok_per_s": round(self.tok_per_s, 1),
            "requests_finished": stats.requests,  # sent inside the window, and finished
            "requests_cut": stats.unfinished,  # still running at the window's end
            "finish_reasons": stats.finish_reasons,
            "completion_tokens_per_finished": round(per_request, 2),
            "ttft_p50_ms": self.ttft_ms(50),
            "ttft_p90_ms": self.ttft_ms(90),
            "ttft_count": len(stats.ttft),
            "errors": stats.error_samples,
            "error_count": stats.errors,
            "extra": {
                "cpu": self.cpu,
                "tokens_per_content_chunk": per_chunk and round(per_chunk, 3),
                **self.extra,
            },
        }


def window_cpu(pid: int, begin: float, end: float) -> dict[str, Any]:
    """Sleeps through [begin, end) (perf_counter); the cores `pid`, its children (the engine
    worker) and their busiest threads used."""
    _sleep_until(begin)
    pids = [pid, *_children(pid)]
    before, began = [thread_cpu_seconds(p) for p in pids], time.perf_counter()
    _sleep_until(end)
    after, seconds = [thread_cpu_seconds(p) for p in pids], time.perf_counter() - began
    used: list[tuple[float, str, bool]] = []
    for process, was, now in zip(pids, before, after, strict=True):
        for tid, (name, total) in now.items():
            label = f"main:{name}" if tid == process else name  # main: the event loop
            cores = (total - was.get(tid, (name, 0.0))[1]) / seconds
            used.append((cores, label if process == pid else f"worker:{label}", process == pid))
    used.sort(reverse=True)
    return {
        "process_cores": round(sum(cores for cores, _, ours in used if ours), 2),
        "worker_cores": round(sum(cores for cores, _, ours in used if not ours), 2),
        "busiest_threads": [[label, round(cores, 2)] for cores, label, _ in used[:4]],
    }


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.perf_counter()))
