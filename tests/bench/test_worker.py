"""The sweep's engine-worker variant: the gateway with its synthetic engine in a worker
process, its CPU read apart from the gateway's, and set against the in-process gateway."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from bench.load import WindowStats
from bench.server import children_cpu_seconds
from bench.sweep import Level, Sweep, SweepConfig, run_sweep
from bench.sweep_report import render_sweep, sweep_figures

# Spins for 0.3 s of CPU, then waits for its stdin to close.
_BUSY_CHILD = (
    "import sys, time\n"
    "began = time.process_time()\n"
    "while time.process_time() - began < 0.3: pass\n"
    "sys.stdout.write('spun\\n'); sys.stdout.flush(); sys.stdin.read()\n"
)


def test_children_cpu_is_read_per_child_apart_from_the_parent() -> None:
    command = [sys.executable, "-c", _BUSY_CHILD]
    # Leaving the block closes its stdin, so that it ends, and waits for it.
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline() == b"spun\n"
        readings = children_cpu_seconds(os.getpid())
    assert 0.2 < readings[child.pid] < 5.0
    assert child.pid not in children_cpu_seconds(os.getpid())  # ended: left out


def _level(streams: int, server_cpu: float, child_cpu: float, label: str = "") -> Level:
    config = SweepConfig(token_seconds=0.02, seconds=10.0)
    stats = WindowStats(tokens=1000.0, chunks=1000, requests=50)
    return Level(
        streams, config, mean_output=128.0, client=stats, server_cpu=server_cpu,
        machine_cpu=1.0, emitted_tps=50.0, queue_wait=0.0, health=[], scrape_seconds=0.0,
        child_cpu=child_cpu, label=label,
    )  # fmt: skip


def test_worker_figures_count_the_gateway_and_its_worker_against_the_inline_gateway() -> None:
    inline = [_level(64, 0.08, 0.0), _level(64, 0.2, 0.0, "64 x 1 tok")]
    worker = [_level(64, 0.06, 0.04), _level(64, 0.1, 0.2, "64 x 1 tok")]
    figures = sweep_figures(Sweep(inline, [], worker))
    assert math.isclose(figures["worker_cpu_us_per_token_c64"], 100.0)  # 60 + 40
    assert math.isclose(figures["worker_gateway_us_per_token_c64"], 60.0)
    assert math.isclose(figures["worker_child_us_per_token_c64"], 40.0)
    assert math.isclose(figures["worker_child_cores_c64"], 0.004)
    assert math.isclose(figures["worker_vs_inline_cpu_per_token_c64"], 100.0 / 80.0)
    assert math.isclose(figures["worker_request_cpu_us"], 300.0)
    assert math.isclose(figures["worker_vs_inline_request_cpu"], 1.5)
    assert figures["cpu_us_per_token_c64"] == 80.0  # the in-process gateway's names stay
    assert not [key for key in figures if key.startswith(("floor_", "ratio_"))]
    # --no-worker: none of the variant's figures.
    alone = sweep_figures(Sweep(inline, []))
    assert not [key for key in alone if key.startswith("worker_")]


def test_the_sweep_measures_the_gateway_with_an_engine_worker() -> None:
    """A short sweep, end to end: the in-process gateway, then the one with a worker."""
    config = SweepConfig(
        levels=(16,), token_seconds=0.002, output_tokens=8, seconds=1.5, warmup=0.5,
        clients=1, request_cost_streams=4, floor=False,
    )  # fmt: skip
    began = time.monotonic()
    sweep = run_sweep(config)
    assert time.monotonic() - began < 50
    assert sweep.floor == [] and len(sweep.worker) == len(sweep.gateway) == 2
    for inline, worker in zip(sweep.gateway, sweep.worker, strict=True):
        assert inline.child_cpu == 0.0  # the engine runs in the gateway's process
        assert worker.server_cpu > 0 and worker.child_cpu > 0
        for level in (inline, worker):
            client = level.client
            assert (client.errors, client.unfinished) == (0, 0)
            assert client.tokens > 0 and client.requests > 0
    figures = sweep_figures(sweep)
    assert figures["worker_child_cores_c16"] > 0
    total = figures["worker_gateway_us_per_token_c16"] + figures["worker_child_us_per_token_c16"]
    assert math.isclose(figures["worker_cpu_us_per_token_c16"], total)
    for key in ("worker_vs_inline_cpu_per_token_c16", "worker_vs_inline_request_cpu"):
        assert 0.2 < figures[key] < 20, (key, figures[key])  # a ratio, not a stray reading
    assert "total/inline" in render_sweep(sweep)
