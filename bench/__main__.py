"""`python -m bench`: the gateway's overhead benchmark (`make bench`).

    python -m bench                               the synthetic sweep + preprocessing
    python -m bench --levels 1,64 --seconds 5     a shorter sweep
    python -m bench --no-floor                    the gateway alone, without the transport floor
    python -m bench --no-worker                   without the gateway's engine-worker variant
    python -m bench --profile 1024 --profile-out /tmp/gw.txt   py-spy during one level
    python -m bench --compare-transformers-serve  gateway vs `transformers serve`, 16 streams

The last line printed is one JSON object with every figure (NaN as null).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from bench import compare, preprocess, profile, sweep, sweep_report


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, shared by the server and the load processes")
    figures = _compare(args) if args.compare_transformers_serve else _sweep(args)
    print(json.dumps({k: _json_number(v) for k, v in figures.items()}, allow_nan=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--compare-transformers-serve", action="store_true")
    parser.add_argument("--levels", default="1,64,256,1024,2048", help="concurrent streams")
    parser.add_argument("--seconds", type=float, help="measured window per level")
    parser.add_argument("--token-seconds", type=float, default=0.02, help="synthetic step")
    parser.add_argument("--prefill-seconds", type=float, default=0.0, help="synthetic prefill")
    parser.add_argument("--output-tokens", type=int, help="mean max_tokens per request")
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    parser.add_argument("--streams", type=int, default=16, help="compare mode's streams")
    parser.add_argument(
        "--request-cost-streams", type=int, default=64, help="1-token requests level (0: none)"
    )
    parser.add_argument("--preprocess-concurrency", type=int, default=2048)
    parser.add_argument(
        "--render-workers", default="1,2", help="render worker counts for the preprocessing burst"
    )
    parser.add_argument("--no-preprocess", action="store_true", help="skip preprocessing")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the transport floor (bench/floor.py)"
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="skip the gateway with its engine in a worker process (GATEWAY_SYNTHETIC__WORKER)",
    )
    parser.add_argument("--profile", type=int, metavar="STREAMS", help="py-spy this level")
    parser.add_argument("--profile-out", type=Path, default=Path("gateway-profile.txt"))
    return parser


def _sweep(args: argparse.Namespace) -> dict[str, Any]:
    config = sweep.SweepConfig(
        levels=tuple(int(level) for level in args.levels.split(",")),
        token_seconds=args.token_seconds,
        prefill_seconds=args.prefill_seconds,
        output_tokens=args.output_tokens or 128,
        seconds=args.seconds or 15.0,
        clients=args.clients,
        request_cost_streams=args.request_cost_streams,
        profile_level=args.profile,
        profile_out=args.profile_out if args.profile else None,
        worker=not args.no_worker,
        floor=not args.no_floor,
    )
    _describe(config)
    result = sweep.run_sweep(config)
    print(sweep_report.render_sweep(result))
    figures: dict[str, Any] = {**_sweep_settings(config), **sweep_report.sweep_figures(result)}
    if config.profile_out is not None and config.profile_out.exists():
        print(f"\npy-spy, gateway at {config.profile_level} streams ({config.profile_out}):")
        print(profile.summarise(config.profile_out))
    if not args.no_preprocess:
        workers = tuple(int(n) for n in args.render_workers.split(","))
        figures.update(_preprocess(args.preprocess_concurrency, workers))
    return figures


def _describe(config: sweep.SweepConfig) -> None:
    print(
        f"synthetic engine: token_seconds={config.token_seconds}, prefill_seconds="
        f"{config.prefill_seconds}; {config.prompt_words}-word prompts, max_tokens "
        f"{config.output_tokens // 2}..{config.output_tokens * 3 // 2}; {config.clients} load "
        f"processes; {config.seconds:.0f} s measured per level after a ramp "
        f"({config.ramp_rate:.0f} streams/s) and a warm-up",
        flush=True,
    )
    print(
        "engine worker: each level runs against the gateway (engine in its process), then at "
        "once against the gateway with its engine in a worker process, same clients and workload"
        if config.worker
        else "engine worker: skipped (--no-worker)",
        flush=True,
    )
    print(
        "transport floor (bench/floor.py): each level runs against the gateway(s), then at once "
        "against the floor, with the same client processes and workload"
        if config.floor
        else "transport floor: skipped (--no-floor)",
        flush=True,
    )


def _sweep_settings(config: sweep.SweepConfig) -> dict[str, Any]:
    return {
        "token_seconds": config.token_seconds,
        "prefill_seconds": config.prefill_seconds,
        "mean_output_tokens": config.output_tokens,
        "window_seconds": config.seconds,
        "client_processes": config.clients,
        "cpus": os.cpu_count(),
    }


def _preprocess(concurrency: int, render_workers: tuple[int, ...]) -> dict[str, Any]:
    print(f"\nprompt preprocessing, {concurrency} concurrent 1000-token prompts:", flush=True)
    result = preprocess.measure(concurrency, render_workers=render_workers)
    print(result.render())
    method = preprocess.METHOD.format(n=concurrency)
    print(f"(ms; {method})")
    suffix = f"_c{concurrency}"
    figures: dict[str, Any] = {
        (k + suffix if k in ("preprocess_p50_ms", "preprocess_p99_ms") else k): v
        for k, v in result.figures().items()
    }
    figures["preprocess_method"] = method
    return figures


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    config = compare.CompareConfig(
        streams=args.streams,
        output_tokens=args.output_tokens or 32,
        seconds=args.seconds or 60.0,
    )
    sides = compare.run_compare(config)
    print(compare.render(sides, config))
    figures: dict[str, Any] = {"streams": config.streams}
    for side, key in zip(sides, ("gateway", "transformers_serve"), strict=True):
        figures.update({f"{key}_{k}": v for k, v in side.figures().items()})
    figures.update(compare.ratios(sides))
    return figures


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    main()
