"""The synthetic-engine sweep: what the gateway adds at 1 to 2048 concurrent streams.

The gateway serves the synthetic engine, which costs nothing but its own
sleeps: every step takes `token_seconds` and gives each running request one
token. Whatever the clients see beyond that is the gateway (HTTP, rendering,
detokenization, SSE framing, the event loop), plus the engine's own wait for
its next step boundary, which is reported apart (see `Level.figures`).

Figures per level, all from one window of one run:
  delivered tok/s   content-chunk tokens the clients received in the window
  ideal tok/s       what the engine would emit with a gateway that cost nothing
  emitted tok/s     the gateway's own count (`gateway_generation_tokens_total`)
  TTFT, ITL         client-side, and "added": minus the engine's step time(s)
  gateway CPU       utime+stime of the server process over the window (/proc)
  client CPU        the load processes' own CPU over the same window

Unless `--no-floor`, each level then runs at once against the transport floor
(bench/floor.py: the least any Python gateway on uvicorn can cost, its tokens
paced as the synthetic engine's) with the same clients and workload; gateway /
floor is the headline.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from bench import profile
from bench.load import ClientPool, LoadPlan, WindowStats
from bench.report import mean, ms, percentile
from bench.server import ServerProcess, floor, gateway, machine_busy_seconds, wait_idle
from bench.workload import CHAT_PATH, chat_bodies, mean_max_tokens

MODEL = "SmolLM2-135M-Instruct"  # the served name: the synthetic engine uses its tokenizer


@dataclass(frozen=True, slots=True)
class SweepConfig:
    levels: tuple[int, ...] = (1, 64, 256, 1024, 2048)
    token_seconds: float = 0.02
    prefill_seconds: float = 0.0
    output_tokens: int = 128  # mean max_tokens; each request's is in [mean/2, 3*mean/2]
    prompt_words: int = 16
    seconds: float = 15.0  # the measured window per level
    # Streams start over max(1 s, streams / ramp_rate); then the warm-up lasts at
    # least two mean requests at the engine's pace, so the window opens on a steady
    # state rather than on the first wave of simultaneous arrivals.
    ramp_rate: float = 256.0  # streams started per second
    warmup: float = 3.0
    clients: int = 2  # load processes
    request_cost_streams: int = 64  # then a level of 1-token requests (0: none)
    profile_level: int | None = None  # py-spy record the gateway during this level
    profile_out: Path | None = None
    floor: bool = True  # each level against the transport floor too, right after the gateway


@dataclass(frozen=True, slots=True)
class Level:
    streams: int
    config: SweepConfig
    mean_output: float  # mean max_tokens of the bodies sent
    client: WindowStats
    server_cpu: float  # seconds over the window
    machine_cpu: float  # all CPUs' busy seconds over the window
    emitted_tps: float  # gateway_generation_tokens_total per second, between two scrapes
    queue_wait: float  # mean engine queue time over the window (s), from /metrics
    health: list[float]  # GET /health latencies during the window (s)
    scrape_seconds: float  # the slowest of the two /metrics answers
    label: str = ""  # how tables name the level; "": its stream count

    @property
    def name(self) -> str:
        return self.label or str(self.streams)

    def ideal_tps(self) -> float:
        """The synthetic engine's emission rate if the gateway cost nothing.

        One stream alone leaves the engine idle between requests and is
        admitted at once: 1/token_seconds. With several, a stream's next request
        arrives during the step after its last token (the engine admits only at
        step boundaries), so each request of M tokens occupies M + 1 steps.
        """
        config = self.config
        step = config.token_seconds + config.prefill_seconds * (self.streams > 1)
        if step <= 0:
            return math.nan  # an engine that takes no time has no rate to keep up with
        if self.streams == 1:
            cycle = self.mean_output * config.token_seconds + config.prefill_seconds
            return self.mean_output / cycle
        return self.streams * self.mean_output / ((self.mean_output + 1) * step)

    def figures(self) -> dict[str, float]:
        config, client, window = self.config, self.client, self.config.seconds
        engine_ttft = config.prefill_seconds + config.token_seconds
        delivered = client.tokens / window
        ttft_mean = mean(client.ttft)
        return {
            "delivered_tps": delivered,
            "ideal_tps": self.ideal_tps(),
            "delivered_ratio": delivered / self.ideal_tps(),
            "emitted_tps": self.emitted_tps,
            "delivered_vs_emitted": delivered / self.emitted_tps if self.emitted_tps else math.nan,
            "ttft_p50_ms": ms(percentile(client.ttft, 50)),
            "ttft_p99_ms": ms(percentile(client.ttft, 99)),
            "added_ttft_p50_ms": ms(percentile(client.ttft, 50) - engine_ttft),
            "added_ttft_p99_ms": ms(percentile(client.ttft, 99) - engine_ttft),
            # Means add up, percentiles do not: the engine's wait for a step boundary
            # comes only as a mean (from /metrics), so the gateway's share is a mean.
            "admission_wait_mean_ms": ms(self.queue_wait),
            "gateway_ttft_mean_ms": ms(ttft_mean - engine_ttft - self.queue_wait),
            "itl_p50_ms": ms(percentile(client.itl, 50)),
            "itl_p99_ms": ms(percentile(client.itl, 99)),
            "added_itl_p50_ms": ms(percentile(client.itl, 50) - config.token_seconds),
            "added_itl_p99_ms": ms(percentile(client.itl, 99) - config.token_seconds),
            "tokens_per_chunk": client.tokens / client.chunks if client.chunks else math.nan,
            "gateway_cores": self.server_cpu / window,
            "cpu_us_per_token": _per_token(self.server_cpu, client.tokens),
            "client_cores": client.cpu_seconds / window,
            "client_us_per_token": _per_token(client.cpu_seconds, client.tokens),
            # Everything else that ran meanwhile: this harness's parent, the kernel's
            # unattributed work, and any other process sharing the machine.
            "other_cores": (self.machine_cpu - self.server_cpu - client.cpu_seconds) / window,
            "health_p50_ms": ms(percentile(self.health, 50)),
            "health_max_ms": ms(max(self.health, default=math.nan)),
            "metrics_scrape_ms": ms(self.scrape_seconds),
            "requests": float(client.requests),
            "errors": float(client.errors),
            "unfinished": float(client.unfinished),
        }


def _per_token(cpu_seconds: float, tokens: float) -> float:
    """Microseconds of CPU per token."""
    return cpu_seconds / tokens * 1e6 if tokens else math.nan


@dataclass(frozen=True, slots=True)
class Sweep:
    gateway: list[Level]
    floor: list[Level]  # the same levels in the same order; empty without the floor


def run_sweep(config: SweepConfig) -> Sweep:
    """Each level against the gateway, then at once against the floor (`config.floor`).

    Both servers stay up all along, the idle one waiting on its event loop:
    interleaving the two puts any drift of a shared machine on both sides.
    """
    env = {
        "GATEWAY_SYNTHETIC__TOKEN_SECONDS": str(config.token_seconds),
        "GATEWAY_SYNTHETIC__PREFILL_SECONDS": str(config.prefill_seconds),
        "GATEWAY_SYNTHETIC__MAX_BATCH_SIZE": str(max(4096, max(config.levels))),
    }
    with ExitStack() as stack:
        servers = [stack.enter_context(gateway("synthetic", env))]
        if config.floor:
            servers.append(stack.enter_context(floor(config.token_seconds, config.prefill_seconds)))
        clients = stack.enter_context(ClientPool(config.clients))
        measured: list[list[Level]] = [[] for _ in servers]
        for streams, level_config, label in _plan(config):
            for server, levels in zip(servers, measured, strict=True):
                level = measure_level(server, clients, streams, level_config)
                levels.append(replace(level, label=label))
                wait_idle(server)
                # py-spy records the gateway only, never the floor after it.
                level_config = replace(level_config, profile_level=None)
            print(f"  {measured[0][-1].name}: done", flush=True)
    return Sweep(measured[0], measured[1] if config.floor else [])


def _plan(config: SweepConfig) -> list[tuple[int, SweepConfig, str]]:
    """The levels in order, as (streams, their config, their label)."""
    plan = [(streams, config, "") for streams in config.levels]
    if config.request_cost_streams:
        # One-token requests: nearly all the gateway's work is per request, so
        # this level prices a request (parsing, rendering, set-up, teardown).
        streams = config.request_cost_streams
        plan.append((streams, replace(config, output_tokens=1), f"{streams} x 1 tok"))
    return plan


def measure_level(
    server: ServerProcess, clients: ClientPool, streams: int, config: SweepConfig
) -> Level:
    bodies = chat_bodies(MODEL, config.prompt_words, config.output_tokens, seed=streams)
    ramp = max(1.0, streams / config.ramp_rate)
    warmup = max(config.warmup, 2 * config.output_tokens * config.token_seconds)
    start = time.perf_counter() + 0.5  # the client processes are warm: little to wait for
    begin = start + ramp + warmup
    end = begin + config.seconds
    # Draining: requests running at the window's end finish (their usage gives the
    # token counts), up to about twice the longest request at the configured pace.
    drain = max(10.0, 3 * config.output_tokens * config.token_seconds)
    plan = LoadPlan(
        "127.0.0.1", server.port, CHAT_PATH, streams, bodies,
        start, ramp, (begin, end), end + drain,
    )  # fmt: skip
    window = _WindowSampler(server, config, streams)
    stats = clients.run(plan, window.run)
    return Level(
        streams=streams,
        config=config,
        mean_output=mean_max_tokens(bodies),
        client=stats,
        server_cpu=window.cpu,
        machine_cpu=window.machine_cpu,
        emitted_tps=window.rate("gateway_generation_tokens_total"),
        queue_wait=window.ratio(
            "gateway_request_queue_time_seconds_sum", "gateway_request_queue_time_seconds_count"
        ),
        health=window.health.latencies,
        scrape_seconds=window.scrape_seconds,
    )


class _WindowSampler:
    """The server's side of a window: CPU from /proc at its edges, /metrics, /health.

    CPU is read at the exact edges. A saturated gateway may answer /metrics
    seconds late, so each scrape carries the time its answer came: rates use
    the interval between the two answers, and a scrape that fails leaves NaN.
    """

    def __init__(self, server: ServerProcess, config: SweepConfig, streams: int) -> None:
        self._server = server
        self._config = config
        self._streams = streams
        self.cpu = math.nan
        self.machine_cpu = math.nan  # every process on the machine, the server's included
        self.health = HealthProbe(server)
        self._scrapes: list[tuple[float, dict[str, float]]] = []
        self.scrape_seconds = 0.0  # the slowest /metrics answer

    def run(self, begin: float, end: float) -> None:
        config, server = self._config, self._server
        _sleep_until(begin)
        cpu, machine, began = server.cpu_seconds(), machine_busy_seconds(), time.perf_counter()
        self.health.start()
        recorder = None
        if config.profile_level == self._streams and config.profile_out is not None:
            recorder = profile.record(server.pid, config.seconds, config.profile_out)
        self._scrape()
        _sleep_until(end)
        # This process may itself wake late on a saturated machine: the CPU is
        # scaled from the interval actually sampled to the window's length.
        used, elapsed = server.cpu_seconds() - cpu, time.perf_counter() - began
        self.cpu = used * (end - begin) / elapsed
        self.machine_cpu = (machine_busy_seconds() - machine) * (end - begin) / elapsed
        self.health.stop()
        self._scrape()
        if recorder is not None:
            recorder.wait()

    def _scrape(self) -> None:
        began = time.perf_counter()
        try:
            values = self._server.metrics(timeout=60.0)
        except (RuntimeError, OSError) as error:
            print(f"  /metrics failed at {self._streams} streams: {error}", flush=True)
            return
        answered = time.perf_counter()
        self.scrape_seconds = max(self.scrape_seconds, answered - began)
        self._scrapes.append((answered, values))

    def _delta(self, name: str) -> float:
        (_, before), (_, after) = self._scrapes
        return after.get(name, 0.0) - before.get(name, 0.0)

    def _reliable(self) -> bool:
        # An answer that took long says little about when the counters were read,
        # hence about which requests the two scrapes bracket.
        return len(self._scrapes) == 2 and self.scrape_seconds <= 0.05 * self._config.seconds

    def rate(self, name: str) -> float:
        if not self._reliable():
            return math.nan
        return self._delta(name) / (self._scrapes[1][0] - self._scrapes[0][0])

    def ratio(self, numerator: str, denominator: str) -> float:
        count = self._delta(denominator) if self._reliable() else 0.0
        return self._delta(numerator) / count if count else math.nan


class HealthProbe:
    """GET /health once a second in a thread: how long a liveness probe waits under load."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.latencies: list[float] = []  # seconds; a failed probe counts as its timeout

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            self._server.get("/health", timeout=30.0)
            self.latencies.append(time.perf_counter() - began)
            self._stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.perf_counter()))
