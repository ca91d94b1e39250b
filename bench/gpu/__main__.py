"""`python -m bench.gpu`: the embedded engine's throughput in-process and through the gateway.

See bench/gpu/__init__.py for what runs, docs/gpu-embedded.md for a run on an H100.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.gpu import elapsed, log, report
from bench.gpu.engine_run import run_engine
from bench.gpu.gateway_run import run_gateway
from bench.gpu.model import SHAPES, build_model, describe_model
from bench.gpu.window import Timing, Window
from bench.gpu.workload import Workload, make_workload


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    concurrencies = [int(n) for n in args.streams.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    results = _head(args, settings, concurrencies)
    log(f"ENV {json.dumps(results['env'])}")
    if args.model_dir is not None:
        model_dir = args.model_dir
        results["model"] = describe_model(model_dir)
    else:
        model_dir = args.work / "model"
        results["model"] = build_model(args.tokenizer_dir, model_dir, args.shape, args.device)
    workload = make_workload(
        model_dir, args.prompts, args.prompt_len, args.max_tokens, max(concurrencies), seed=1
    )
    results["workload"]["prompt_tokens"] = workload.prompt_tokens()
    log(f"{len(workload.prompts)} prompts: {results['workload']['prompt_tokens']} tokens")
    windows = _measure(args, model_dir, settings, workload, concurrencies, results)
    rows = report.rows(concurrencies, *windows)
    results["rows"] = rows
    results["elapsed_s"] = round(elapsed(), 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(report.render(results, rows))
    print("RESULT " + json.dumps(report.final(results, rows)))
    return 0 if all(r["ratio"] is not None for r in rows) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu")
    parser.add_argument("--tokenizer-dir", type=Path, default=Path(".gpu_tok"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_embedded"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "."))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument(
        "--model-dir", type=Path, help="serve this model directory instead of building --shape"
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--streams", default="64,256", help="comma-separated concurrencies")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before each window")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--num-blocks", type=int, default=640)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=1024, help="distinct prompts, cycled")
    parser.add_argument("--recheck", action="store_true", help="the engine again at the end")
    parser.add_argument(
        "--inline", action="store_true", help="the gateway again, the engine in its process"
    )
    parser.add_argument(
        "--gateway-first", action="store_true", help="the gateway before the engine, not after"
    )
    parser.add_argument("--deadline", type=float, default=500.0, help="seconds for everything")
    return parser


def _settings(args: argparse.Namespace) -> Any:
    """The engine's settings, the same on both paths."""
    from engines.settings import TransformersSettings

    return TransformersSettings(
        device=args.device,
        dtype=args.dtype,
        num_blocks=args.num_blocks,
        block_size=args.block_size,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_size=args.max_batch_size,
    )


def _head(args: argparse.Namespace, settings: Any, concurrencies: list[int]) -> dict[str, Any]:
    """What `results.json` records before anything is measured."""
    return {
        "env": report.environment(args.device),
        "settings": settings.model_dump(),
        "workload": {
            "prompt_len": args.prompt_len,
            "max_tokens": args.max_tokens,
            "greedy": True,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "streams": concurrencies,
        },
        "errors": [],
    }


def _measure(
    args: argparse.Namespace,
    model_dir: Path,
    settings: Any,
    workload: Workload,
    concurrencies: list[int],
    results: dict[str, Any],
) -> tuple[list[Window], list[Window], list[Window], list[Window]]:
    """The engine's windows, the gateway's, the engine's again (`--recheck`) and the
    gateway's with the engine in the gateway's process, as before it had a worker (`--inline`)."""
    timing = Timing(args.warmup, args.window, args.deadline)
    if args.gateway_first:  # which comes first gets the machine as it was after the build
        gateway = _gateway(args, model_dir, settings, workload, concurrencies, timing, results)
    engine, load_s = asyncio.run(run_engine(model_dir, settings, workload, concurrencies, timing))
    results["engine_load_s"] = round(load_s, 1)
    if not args.gateway_first:
        gateway = _gateway(args, model_dir, settings, workload, concurrencies, timing, results)
    recheck: list[Window] = []
    if args.recheck and timing.room_for(40):
        # The same engine windows once more: how far the machine drifted meanwhile.
        recheck, _ = asyncio.run(run_engine(model_dir, settings, workload, concurrencies, timing))
    inline: list[Window] = []
    if args.inline and timing.room_for(40):
        inline_settings = settings.model_copy(update={"worker": False})
        inline = _gateway(
            args, model_dir, inline_settings, workload, concurrencies, timing, results
        )
    return engine, gateway, recheck, inline


def _gateway(
    args: argparse.Namespace,
    model_dir: Path,
    settings: Any,
    workload: Workload,
    concurrencies: list[int],
    timing: Timing,
    results: dict[str, Any],
) -> list[Window]:
    where = "worker" if settings.worker else "inline"
    try:
        windows, load_s = run_gateway(
            model_dir, settings, workload, concurrencies, timing, args.client_procs, args.out
        )
    except Exception as failure:  # the engine's figures are still worth printing
        results["errors"].append(f"gateway ({where}): {failure!r}")
        log(f"gateway ({where}) failed: {failure!r}")
        return []
    results[f"gateway_{where}_load_s"] = round(load_s, 1)
    return windows


if __name__ == "__main__":
    sys.exit(main())
