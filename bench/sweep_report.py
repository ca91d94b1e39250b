"""How a sweep is reported: the figures of the JSON line, and the tables.

The gateway's figures per level are keyed `<figure>_c<streams>`, the floor's
beside them `floor_<figure>_c<streams>`, and their ratio (gateway / floor) is
the headline: `ratio_cpu_per_token_c<streams>`, `ratio_request_cpu`.
"""

from __future__ import annotations

import math

from bench.report import fmt, table
from bench.sweep import Level, Sweep

# "other cores" above this mean another workload shared the machine (the harness's
# own parent process and unattributed kernel work stay well below it).
OTHER_CORES_WARNING = 0.25
# The floor's figures in the JSON line, per level (`floor_<figure>_c<streams>`).
FLOOR_FIGURES = ("cpu_us_per_token", "delivered_ratio", "errors")


def sweep_figures(sweep: Sweep) -> dict[str, float]:
    """The figures of the JSON line: the gateway's per level (`<figure>_c<streams>`), the
    floor's beside them (`floor_<figure>_c<streams>`) and their ratios (gateway / floor)."""
    figures: dict[str, float] = {}
    floors: list[Level | None] = [*sweep.floor] or [None] * len(sweep.gateway)
    for level, floor_level in zip(sweep.gateway, floors, strict=True):
        figures.update(_level_figures(level, floor_level))
    per_token = [figures.get(f"cpu_us_per_token_c{n}", math.nan) for n in (256, 1024)]
    figures["cpu_us_per_token"] = max(per_token)  # the goal holds at both
    return figures


def _level_figures(level: Level, floor_level: Level | None) -> dict[str, float]:
    ours = level.figures()
    theirs = floor_level.figures() if floor_level is not None else {}
    if level.label:  # the 1-token level: what one request costs
        figures = {
            "request_cpu_us": ours["cpu_us_per_token"],
            "request_rate_1tok": ours["requests"] / level.config.seconds,
        }
        if theirs:
            figures["floor_request_cpu_us"] = theirs["cpu_us_per_token"]
            figures["ratio_request_cpu"] = _cpu_ratio(ours, theirs)
        return figures
    suffix = f"_c{level.streams}"
    figures = {key + suffix: value for key, value in ours.items()}
    if theirs:
        figures.update({f"floor_{key}{suffix}": theirs[key] for key in FLOOR_FIGURES})
        figures[f"ratio_cpu_per_token{suffix}"] = _cpu_ratio(ours, theirs)
    return figures


def _cpu_ratio(gateway_figures: dict[str, float], floor_figures: dict[str, float]) -> float:
    """The gateway's CPU per token over the floor's."""
    floor_cpu = floor_figures["cpu_us_per_token"]
    return gateway_figures["cpu_us_per_token"] / floor_cpu if floor_cpu else math.nan


def render_sweep(sweep: Sweep) -> str:
    text = render(sweep.gateway)
    if not sweep.floor:
        return text
    return (
        f"{text}\n\ntransport floor (bench/floor.py), each level right after the gateway's:\n"
        f"{render(sweep.floor, server='floor')}\n\n{render_ratios(sweep)}"
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
                ("delivered_vs_emitted", 3), ("tokens_per_chunk", 2), ("gateway_cores", 2),
                ("cpu_us_per_token", 1), ("client_cores", 2), ("client_us_per_token", 1),
                ("other_cores", 2), ("requests", 0), ("errors", 0)))]
            for level in levels for f in [level.figures()]
        ],
    )  # fmt: skip
    latency = table(
        ["streams", "TTFT p50", "TTFT p99", "+TTFT p50", "+TTFT p99", "adm wait mean",
         f"{server} TTFT mean", "ITL p50", "ITL p99", "+ITL p50", "+ITL p99", "/health p50",
         "/health max"],
        [
            [level.name, *(fmt(f[key], 2) for key in (
                "ttft_p50_ms", "ttft_p99_ms", "added_ttft_p50_ms", "added_ttft_p99_ms",
                "admission_wait_mean_ms", "gateway_ttft_mean_ms", "itl_p50_ms", "itl_p99_ms",
                "added_itl_p50_ms", "added_itl_p99_ms", "health_p50_ms", "health_max_ms"))]
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
