"""The gateway against `transformers serve` on the embedded model, same workload.

Both serve the same converted SmolLM2 directory on the CPU with transformers'
continuous batching and the same bounded paged cache (the gateway's
`TransformersSettings` defaults: 64 blocks of 256 tokens, 512 tokens per
batch). They run one after the other, never together: each gets the whole
machine while it is measured (the client processes aside). Requests are greedy
(temperature 0), so both generate the same tokens.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import ClientPool, LoadPlan, WindowStats
from bench.report import fmt, ms, percentile, table
from bench.server import ServerProcess, free_port, gateway, machine_busy_seconds
from bench.workload import CHAT_PATH, chat_bodies

PROMPT_WORDS = 48  # plus the template: about 80 prompt tokens


@dataclass(frozen=True, slots=True)
class CompareConfig:
    streams: int = 16
    output_tokens: int = 32
    seconds: float = 60.0
    warmup: float = 10.0  # transformers serve compiles and warms up on its first requests
    ramp: float = 1.0
    clients: int = 1  # 16 streams of a CPU model are a light load to generate


@dataclass(frozen=True, slots=True)
class Side:
    name: str
    client: WindowStats
    server_cpu: float  # seconds over the window
    machine_cpu: float  # all CPUs' busy seconds over the window
    seconds: float

    def figures(self) -> dict[str, float]:
        client = self.client
        return {
            "tps": client.tokens / self.seconds,
            "rps": client.requests / self.seconds,
            "ttft_p50_ms": ms(percentile(client.ttft, 50)),
            "ttft_p99_ms": ms(percentile(client.ttft, 99)),
            "itl_p50_ms": ms(percentile(client.itl, 50)),
            "itl_p99_ms": ms(percentile(client.itl, 99)),
            "tokens_per_request": (
                client.completion_tokens / client.requests if client.requests else math.nan
            ),
            "server_cores": self.server_cpu / self.seconds,
            "client_cores": client.cpu_seconds / self.seconds,
            # Anything else running meanwhile (other workloads on a shared machine).
            "other_cores": (self.machine_cpu - self.server_cpu - client.cpu_seconds) / self.seconds,
            "errors": float(client.errors),
        }


def transformers_serve(model_dir: Path) -> ServerProcess:
    """`transformers serve` with the gateway's default cache bounds and dtype, offline."""
    from engines.settings import TransformersSettings

    defaults = TransformersSettings()
    port = free_port()
    command = [
        sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir),
        "--continuous-batching", "--device", "cpu", "--dtype", defaults.dtype,
        "--cb-num-blocks", str(defaults.num_blocks), "--cb-block-size", str(defaults.block_size),
        "--cb-max-batch-tokens", str(defaults.max_batch_tokens),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return ServerProcess("transformers-serve", command, port, offline, ready_path="/health")


def run_compare(config: CompareConfig) -> list[Side]:
    from gateway.serving.model_files import EMBEDDED_NAME, resolve_model_dir
    from gateway.settings import Settings

    model_dir = resolve_model_dir(None, Settings().cache_dir)
    sides = []
    with ClientPool(config.clients) as clients:
        with gateway("transformers") as server:
            sides.append(_measure("gateway", server, EMBEDDED_NAME, clients, config))
        with transformers_serve(model_dir) as server:
            sides.append(_measure("transformers serve", server, str(model_dir), clients, config))
    return sides


def _measure(
    name: str, server: ServerProcess, model: str, clients: ClientPool, config: CompareConfig
) -> Side:
    print(f"  measuring {name} (pid {server.pid})", flush=True)
    bodies = chat_bodies(
        model, PROMPT_WORDS, config.output_tokens, count=32, seed=16, temperature=0.0
    )
    start = time.perf_counter() + 0.5
    begin = start + config.ramp + config.warmup
    end = begin + config.seconds
    plan = LoadPlan(
        "127.0.0.1", server.port, CHAT_PATH, config.streams, bodies,
        start, config.ramp, (begin, end), end + 60.0,
    )  # fmt: skip
    cpu: list[tuple[float, float]] = []  # (server, whole machine) at the window's edges

    def on_window(begin: float, end: float) -> None:
        for moment in (begin, end):
            time.sleep(max(0.0, moment - time.perf_counter()))
            cpu.append((server.cpu_seconds(), machine_busy_seconds()))

    stats = clients.run(plan, on_window)
    (server_before, machine_before), (server_after, machine_after) = cpu
    return Side(
        name, stats, server_after - server_before, machine_after - machine_before, config.seconds
    )


def ratios(sides: list[Side]) -> dict[str, float]:
    ours, theirs = (side.figures() for side in sides)
    return {
        "throughput_ratio": ours["tps"] / theirs["tps"] if theirs["tps"] else math.inf,
        "ttft_p50_ratio": ours["ttft_p50_ms"] / theirs["ttft_p50_ms"],
        "ttft_p99_ratio": ours["ttft_p99_ms"] / theirs["ttft_p99_ms"],
    }


_HEADERS = ["server", "tok/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "tok/req",
            "server cores", "client cores", "other cores", "errors"]  # fmt: skip


def render(sides: list[Side], config: CompareConfig) -> str:
    rows = []
    for side in sides:
        f = side.figures()
        rows.append([side.name, fmt(f["tps"], 1), fmt(f["rps"], 2),
                     *(fmt(f[k], 1) for k in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms",
                                              "itl_p99_ms", "tokens_per_request")),
                     *(fmt(f[k], 2) for k in ("server_cores", "client_cores", "other_cores")),
                     fmt(f["errors"], 0)])  # fmt: skip
    r = ratios(sides)
    return (
        f"{config.streams} streams, {config.seconds:.0f} s window, max_tokens about "
        f"{config.output_tokens}, greedy; latencies in ms\n{table(_HEADERS, rows)}\n"
        f"gateway / transformers serve: throughput x{r['throughput_ratio']:.2f}, "
        f"TTFT p50 x{r['ttft_p50_ratio']:.2f}, TTFT p99 x{r['ttft_p99_ratio']:.2f}"
    )
