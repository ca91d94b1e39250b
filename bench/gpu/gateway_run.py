"""The gateway: `trtllm-gateway serve` in a subprocess, loaded by `bench.load`'s client processes.

The gateway serves the same model directory with the same engine settings as
the in-process run, started as an operator starts it (`bench.server.gateway`,
configured by `GATEWAY_*` variables). Its clients send the same requests in
the same order, and are cut at the window's end as the engine's streams are.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.gpu import log
from bench.gpu.window import Timing, Window, window_cpu
from bench.gpu.workload import Workload
from bench.load import ClientPool, LoadPlan
from bench.server import ServerProcess, gateway, wait_idle
from bench.workload import CHAT_PATH

SERVED_NAME = "bench-random-llama"


def run_gateway(
    model_dir: Path,
    settings: Any,
    workload: Workload,
    concurrencies: list[int],
    timing: Timing,
    client_procs: int,
    out: Path,
) -> tuple[list[Window], float]:
    """Starts the gateway, measures one window per concurrency, stops it; and its load time.

    The gateway's output goes to `out/gateway.log` (`gateway-inline.log` with the engine in
    the gateway's process).
    """
    server = gateway("transformers", _environment(model_dir, settings))
    bodies = workload.chat_bodies(SERVED_NAME)
    windows = []
    try:
        started = time.monotonic()
        server.start(timeout=300.0)
        load_s = time.monotonic() - started
        log(f"gateway ready on port {server.port} in {load_s:.1f}s (pid {server.pid})")
        with ClientPool(client_procs) as clients:
            for streams in concurrencies:
                if not timing.room_for(20):
                    log(f"gateway n={streams}: skipped, too little time left")
                    continue
                window = measure_gateway(server, clients, bodies, streams, timing)
                log(f"GATEWAY n={streams}: {json.dumps(window.summary())}")
                windows.append(window)
                wait_idle(server)  # the cut requests are aborted as their clients leave
    finally:
        server.stop(keep_log=True)
        if server.log_path and Path(server.log_path).exists():
            name = "gateway.log" if settings.worker else "gateway-inline.log"
            shutil.move(server.log_path, out / name)
        log("gateway stopped")
    return windows, load_s


def measure_gateway(
    server: ServerProcess,
    clients: ClientPool,
    bodies: tuple[tuple[bytes, ...], tuple[bytes, ...]],
    streams: int,
    timing: Timing,
) -> Window:
    start = time.perf_counter() + 0.5  # the client processes are warm: little to wait for
    begin, end = timing.edges(start)
    plan = LoadPlan(
        "127.0.0.1", server.port, CHAT_PATH, streams, bodies[0],
        start, 0.0, (begin, end), end, first_bodies=bodies[1],
    )  # fmt: skip
    cpu: dict[str, Any] = {}
    stats = clients.run(plan, lambda begin, end: cpu.update(window_cpu(server.pid, begin, end)))
    extra = {
        "client_processes": clients.processes,
        "client_cores": round(stats.cpu_seconds / timing.window, 2),
    }
    return Window("gateway", streams, timing.window, stats, cpu, extra)


def _environment(model_dir: Path, settings: Any) -> dict[str, str]:
    env = {
        "GATEWAY_MODEL": str(model_dir),
        "GATEWAY_SERVED_MODEL_NAME": SERVED_NAME,
        "GATEWAY_LOG_LEVEL": "warning",
        "GATEWAY_SHUTDOWN_GRACE_SECONDS": "2",
    }
    for key, value in settings.model_dump(exclude_none=True).items():
        env[f"GATEWAY_TRANSFORMERS__{key.upper()}"] = str(value)
    return env
