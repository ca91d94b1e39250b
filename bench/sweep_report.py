"""How a sweep is reported: the figures of the JSON line, and the tables.

The gateway's figures per level are keyed `<figure>_c<streams>`, the floor's
beside them `floor_<figure>_c<streams>`, and their ratio (gateway / floor) is
the headline: `ratio_cpu_per_token_c<streams>`, `ratio_request_cpu`.

The gateway's with an engine worker are keyed `worker_<figure>_c<streams>`
(`worker_cpu_us_per_token_*` counts the gateway and the worker, `worker_gateway_*`
the gateway process alone, `worker_child_*` the worker), and their CPU per token
over the in-process gateway's `worker_vs_inline_cpu_per_token_c<streams>`,
`worker_vs_inline_request_cpu`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report import fmt, table
from bench.sweep import Level, Sweep

# "other cores" above this mean another workload shared the machine (the harness's
# own parent process and unattributed kernel work stay well below it).
OTHER_CORES_WARNING = 0.25
# What an engine worker may cost: the gateway and its worker together within this
# many times the in-process gateway's CPU per token.
WORKER_GOAL = 1.3


@dataclass(frozen=True, slots=True)
class _Side:
    """A server each level runs against besides the in-process gateway, as the JSON has it."""

    prefix: str  # of its figures' keys
    figures: tuple[str, ...]  # its figures in the JSON line, per level
    ratio: str  # its CPU-per-token ratio is keyed `<ratio>cpu_per_token_c<streams>`
    over_gateway: bool  # that ratio: its CPU over the gateway's, else the gateway's over its


FLOOR = _Side("floor_", ("cpu_us_per_token", "delivered_ratio", "errors"), "ratio_", False)
WORKER = _Side(
    "worker_",
    ("cpu_us_per_token", "gateway_us_per_token", "child_us_per_token", "child_cores",
     "delivered_ratio", "errors"),
    "worker_vs_inline_",
    True,
)  # fmt: skip


def sweep_figures(sweep: Sweep) -> dict[str, float]:
    """The figures of the JSON line: the gateway's per level (`<figure>_c<streams>`), and
    beside them the floor's and the worker variant's with their ratios (module docstring)."""
    figures: dict[str, float] = {}
    # A side skipped (`--no-worker`, `--no-floor`) has no levels.
    sides = [(side, levels) for side, levels in ((WORKER, sweep.worker), (FLOOR, sweep.floor))
             if levels]  # fmt: skip
    for index, level in enumerate(sweep.gateway):
        figures.update(_level_figures(level))
        for side, levels in sides:
            figures.update(_side_figures(side, level, levels[index]))
    per_token = [figures.get(f"cpu_us_per_token_c{n}", math.nan) for n in (256, 1024)]
    figures["cpu_us_per_token"] = max(per_token)  # the goal holds at both
    return figures


def _level_figures(level: Level) -> dict[str, float]:
    ours = level.figures()
    if level.label:  # the 1-token level: what one request costs
        return {
            "request_cpu_us": ours["cpu_us_per_token"],
            "request_rate_1tok": ours["requests"] / level.config.seconds,
        }
    return {f"{key}_c{level.streams}": value for key, value in ours.items()}


def _side_figures(side: _Side, level: Level, other: Level) -> dict[str, float]:
    """`other`'s figures (one of `side`'s levels) beside the gateway's `level`."""
    ours, theirs = level.figures(), other.figures()
    ratio = _cpu_ratio(theirs, ours) if side.over_gateway else _cpu_ratio(ours, theirs)
    if level.label:
        return {
            f"{side.prefix}request_cpu_us": theirs["cpu_us_per_token"],
            f"{side.ratio}request_cpu": ratio,
        }
    suffix = f"_c{level.streams}"
    figures = {f"{side.prefix}{key}{suffix}": theirs[key] for key in side.figures}
    figures[f"{side.ratio}cpu_per_token{suffix}"] = ratio
    return figures


def _cpu_ratio(numerator: dict[str, float], denominator: dict[str, float]) -> float:
    """One server's CPU per token over another's, from their figures."""
    below = denominator["cpu_us_per_token"]
    return numerator["cpu_us_per_token"] / below if below else math.nan


def render_sweep(sweep: Sweep) -> str:
    parts = [render(sweep.gateway)]
    if sweep.worker:
        parts.append(
            "the gateway with its engine in a worker process (GATEWAY_SYNTHETIC__WORKER=true), "
            f"each level right after the in-process gateway's:\n{render(sweep.worker, 'gw+wk')}"
        )
        parts.append(render_worker_ratios(sweep))
    if sweep.floor:
        parts.append(
            "transport floor (bench/floor.py), each level right after the gateways':\n"
            f"{render(sweep.floor, server='floor')}"
        )
        parts.append(render_ratios(sweep))
    return "\n\n".join(parts)


def render_worker_ratios(sweep: Sweep) -> str:
    rows = []
    for level, worker_level in zip(sweep.gateway, sweep.worker, strict=True):
        ours, theirs = level.figures(), worker_level.figures()
        rows.append([
            level.name, fmt(ours["cpu_us_per_token"], 1), fmt(theirs["gateway_us_per_token"], 1),
            fmt(theirs["child_us_per_token"], 1), fmt(theirs["cpu_us_per_token"], 1),
            fmt(_cpu_ratio(theirs, ours), 2), fmt(theirs["child_cores"], 2),
            fmt(ours["delivered_ratio"], 3), fmt(theirs["delivered_ratio"], 3),
        ])  # fmt: skip
    headers = ["streams", "inline us/tok", "wk: gw us/tok", "wk: worker us/tok",
               "wk: total us/tok", "total/inline", "worker cores", "inline deliv/ideal",
               "wk deliv/ideal"]  # fmt: skip
    return (
        "gateway + engine worker (wk) / in-process gateway (inline), CPU per streamed token "
        f"(goal: within {WORKER_GOAL}x):\n{table(headers, rows)}\n"
        "(1-token level: a token is a request, so us/tok is CPU per short request)"
    )


def render_ratios(sweep: Sweep) -> str:
    rows = []
    for level, floor_level in zip(sweep.gateway, sweep.floor, strict=True):
        ours, theirs = level.figures(), floor_level.figures()
        rows.append([
            level.name, fmt(ours["cpu_us_per_token"], 1), fmt(theirs["cpu_us_per_token"], 1),
            fmt(_cpu_ratio(ours, theirs), 2), fmt(ours["delivered_ratio"], 3),
            fmt(theirs["delivered_ratio"], 3),
        ])  # fmt: skip
    headers = ["streams", "gw us/tok", "floor us/tok", "gw/floor", "gw deliv/ideal",
               "floor deliv/ideal"]  # fmt: skip
    return (
        f"gateway / transport floor, CPU per streamed token:\n{table(headers, rows)}\n"
        "(1-token level: a token is a request, so us/tok is CPU per short request)"
    )


def render(levels: list[Level], server: str = "gw") -> str:
    throughput = table(
        ["streams", "deliv tok/s", "ideal tok/s", "deliv/ideal", "deliv/emitted", "tok/chunk",
         f"{server} cores", f"{server} us/tok", "client cores", "client us/tok", "other cores",
         "reqs", "errors"],
        [
            [level.name, *(fmt(f[key], digits) for key, digits in (
                ("delivered_tps", 0), ("ideal_tps", 0), ("delivered_ratio", 3),
                ("delivered_vs_emitted", 3), ("tokens_per_chunk", 2), ("server_cores", 2),
                ("cpu_us_per_token", 1), ("client_cores", 2), ("client_us_per_token", 1),
                ("other_cores", 2), ("requests", 0), ("errors", 0)))]
            for level in levels for f in [level.figures()]
        ],
    )  # fmt: skip
    latency = table(
        ["streams", "TTFT p50", "TTFT p99", "+TTFT p50", "+TTFT p99", "adm wait mean",
         f"{server} TTFT mean", "ITL p50", "ITL p99", "+ITL p50", "+ITL p99", "/health p50",
         "/health p99", "/health max"],
        [
            [level.name, *(fmt(f[key], 2) for key in (
                "ttft_p50_ms", "ttft_p99_ms", "added_ttft_p50_ms", "added_ttft_p99_ms",
                "admission_wait_mean_ms", "gateway_ttft_mean_ms", "itl_p50_ms", "itl_p99_ms",
                "added_itl_p50_ms", "added_itl_p99_ms", "health_p50_ms", "health_p99_ms",
                "health_max_ms"))]
            for level in levels for f in [level.figures()]
        ],
    )  # fmt: skip
    busy = [f"{level.name} ({level.figures()['other_cores']:.2f})" for level in levels
            if level.figures()["other_cores"] > OTHER_CORES_WARNING]  # fmt: skip
    warning = (
        f"\nWARNING: other processes used CPU during these levels (cores): {', '.join(busy)}; "
        "their figures are pessimistic, rerun on a quiet machine"
        if busy
        else ""
    )
    return f"{throughput}\n\nlatencies in ms:\n{latency}{warning}"
