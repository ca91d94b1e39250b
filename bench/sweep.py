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
  child CPU         the same of the processes it started (the engine worker), apart
  client CPU        the load processes' own CPU over the same window

Unless `--no-worker`, each level then runs at once against the same gateway with
its synthetic engine in a worker process (engines/worker/), whose CPU per token
(gateway and worker together) is set against the in-process gateway's.

Unless `--no-floor`, each level then runs against the transport floor
(bench/floor.py: the least any Python gateway on uvicorn can cost, its tokens
paced as the synthetic engine's) with the same clients and workload; gateway /
floor is the headline.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
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
    worker: bool = True  # each level against the gateway with an engine worker, right after
    floor: bool = True  # each level against the transport floor too, right after the gateway


@dataclass(frozen=True, slots=True)
class Level:
    streams: int
    config: SweepConfig
    mean_output: float  # mean max_tokens of the bodies sent
    client: WindowStats
    server_cpu: float  # seconds over the window, the server process alone
    machine_cpu: float  # all CPUs' busy seconds over the window
    emitted_tps: float  # gateway_generation_tokens_total per second, between two scrapes
    queue_wait: float  # mean engine queue time over the window (s), from /metrics
    health: list[float]  # GET /health latencies during the window (s)
    scrape_seconds: float  # the slowest of the two /metrics answers
    child_cpu: float = 0.0  # seconds over the window of the processes the server started
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
            **self._cpu_figures(),
            "health_p50_ms": ms(percentile(self.health, 50)),
            "health_p99_ms": ms(percentile(self.health, 99)),
            "health_max_ms": ms(max(self.health, default=math.nan)),
            "metrics_scrape_ms": ms(self.scrape_seconds),
            "requests": float(client.requests),
            "errors": float(client.errors),
            "unfinished": float(client.unfinished),
        }

    def _cpu_figures(self) -> dict[str, float]:
        client, window = self.client, self.config.seconds
        # The server's CPU counts its children's (the engine worker's): the
        # process alone is "gateway", its children "child".
        server_cpu = self.server_cpu + self.child_cpu
        return {
            "server_cores": server_cpu / window,
            "cpu_us_per_token": _per_token(server_cpu, client.tokens),
            "gateway_cores": self.server_cpu / window,
            "gateway_us_per_token": _per_token(self.server_cpu, client.tokens),
            "child_cores": self.child_cpu / window,
            "child_us_per_token": _per_token(self.child_cpu, client.tokens),
            "client_cores": client.cpu_seconds / window,
            "client_us_per_token": _per_token(client.cpu_seconds, client.tokens),
            # Everything else that ran meanwhile: this harness's parent, the kernel's
            # unattributed work, and any other process sharing the machine.
            "other_cores": (self.machine_cpu - server_cpu - client.cpu_seconds) / window,
        }


def _per_token(cpu_seconds: float, tokens: float) -> float:
    """Microseconds of CPU per token."""
    return cpu_seconds / tokens * 1e6 if tokens else math.nan


@dataclass(frozen=True, slots=True)
class Sweep:
    gateway: list[Level]  # the engine in the gateway's process
    floor: list[Level]  # the same levels in the same order; empty without the floor
    # The same levels against the gateway with its engine in a worker process; empty
    # without it (`--no-worker`).
    worker: list[Level] = field(default_factory=list)


def run_sweep(config: SweepConfig) -> Sweep:
    """Each level against the gateway, then at once against the gateway with an engine
    worker (`config.worker`), then against the floor (`config.floor`).

    All servers stay up all along, the idle ones waiting on their event loops:
    interleaving them puts any drift of a shared machine on every side.
    """
    with ExitStack() as stack:
        servers = {side: stack.enter_context(server) for side, server in _servers(config)}
        clients = stack.enter_context(ClientPool(config.clients))
        measured: dict[str, list[Level]] = {side: [] for side in servers}
        for streams, level_config, label in _plan(config):
            for side, server in servers.items():
                level = measure_level(server, clients, streams, level_config)
                measured[side].append(replace(level, label=label))
                wait_idle(server)
                # py-spy records the in-process gateway only, never the servers after it.
                level_config = replace(level_config, profile_level=None)
            print(f"  {measured['gateway'][-1].name}: done", flush=True)
    return Sweep(measured["gateway"], measured.get("floor", []), measured.get("worker", []))


def _servers(config: SweepConfig) -> list[tuple[str, ServerProcess]]:
    """The sweep's servers, not started yet, in the order each level runs against them."""
    env = {
        "GATEWAY_SYNTHETIC__TOKEN_SECONDS": str(config.token_seconds),
        "GATEWAY_SYNTHETIC__PREFILL_SECONDS": str(config.prefill_seconds),
        "GATEWAY_SYNTHETIC__MAX_BATCH_SIZE": str(max(4096, max(config.levels))),
        # Explicit, so that a value in the harness's own environment changes nothing.
        "GATEWAY_SYNTHETIC__WORKER": "false",
    }
    servers = [("gateway", gateway("synthetic", env))]
    if config.worker:
        worker_env = {**env, "GATEWAY_SYNTHETIC__WORKER": "true"}
        servers.append(("worker", gateway("synthetic", worker_env, "gateway-synthetic-worker")))
    if config.floor:
        servers.append(("floor", floor(config.token_seconds, config.prefill_seconds)))
    return servers


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
        child_cpu=window.child_cpu,
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
        self.cpu = math.nan  # the server process alone
        self.child_cpu = math.nan  # the processes it started (the engine worker)
        self.machine_cpu = math.nan  # every process on the machine, the server's included
        self.health = HealthProbe(server)
        self._scrapes: list[tuple[float, dict[str, float]]] = []
        self.scrape_seconds = 0.0  # the slowest /metrics answer

    def run(self, begin: float, end: float) -> None:
        config, server = self._config, self._server
        _sleep_until(begin)
        cpu, children = server.cpu_seconds(), server.children_cpu_seconds()
        machine, began = machine_busy_seconds(), time.perf_counter()
        self.health.start()
        recorder = None
        if config.profile_level == self._streams and config.profile_out is not None:
            recorder = profile.record(server.pid, config.seconds, config.profile_out)
        self._scrape()
        _sleep_until(end)
        cpu_end, children_end = server.cpu_seconds(), server.children_cpu_seconds()
        machine_end, elapsed = machine_busy_seconds(), time.perf_counter() - began
        # This process may itself wake late on a saturated machine: the CPU is
        # scaled from the interval actually sampled to the window's length.
        scale = (end - begin) / elapsed
        self.cpu = (cpu_end - cpu) * scale
        # A child started within the window counts from zero.
        child_used = sum(now - children.get(pid, 0.0) for pid, now in children_end.items())
        self.child_cpu = child_used * scale
        self.machine_cpu = (machine_end - machine) * scale
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
    """GET /health ten times a second in a thread, each on a new connection: how long a
    liveness probe waits under load. Enough samples in a window for a p99."""

    INTERVAL_SECONDS = 0.1

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
            self._stop.wait(max(0.0, self.INTERVAL_SECONDS - (time.perf_counter() - began)))


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.perf_counter()))
