"""What the benchmark prints and saves: rows per concurrency, the table, the `RESULT` line."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

from bench.gpu.window import Window
from bench.report import table

_HEADERS = [
    "streams", "engine tok/s", "gateway tok/s", "ratio", "engine TTFT p50 ms",
    "gateway TTFT p50 ms", "finish reasons (gateway)", "engine inline: gateway tok/s", "ratio",
]  # fmt: skip
_COLUMNS = [  # the rows' keys under those headers
    "streams", "engine_tok_s", "gateway_tok_s", "ratio", "engine_ttft_p50_ms",
    "gateway_ttft_p50_ms", "gateway_finish_reasons", "inline_tok_s", "inline_ratio",
]  # fmt: skip


def environment(device: str) -> dict[str, Any]:
    """Versions and hardware, for the record: the figures mean little without them."""
    from importlib.metadata import version

    import torch
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "cpus": os.cpu_count(),
    }
    for name in ("fastapi", "uvicorn", "sse-starlette", "pydantic", "huggingface-hub"):
        with contextlib.suppress(Exception):
            env[name] = version(name)
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def rows(concurrencies: list[int], *paths: list[Window]) -> list[dict[str, Any]]:
    """One row per concurrency; a path skipped there (no time left, a failure) leaves None.

    `paths`: the engine's windows, the gateway's, the engine's again (`--recheck`) and
    the gateway's with the engine in its own process (`--inline`)."""
    return [
        _row(streams, *(_find(windows, streams) for windows in paths)) for streams in concurrencies
    ]


def _row(
    streams: int, e: Window | None, g: Window | None, e2: Window | None, i: Window | None
) -> dict[str, Any]:
    return {
        "streams": streams,
        "engine_tok_s": round(e.tok_per_s, 1) if e else None,
        "gateway_tok_s": round(g.tok_per_s, 1) if g else None,
        "ratio": round(g.tok_per_s / e.tok_per_s, 3) if e and g and e.stats.tokens else None,
        "engine_ttft_p50_ms": e.ttft_ms(50) if e else None,
        "gateway_ttft_p50_ms": g.ttft_ms(50) if g else None,
        "gateway_finish_reasons": g.stats.finish_reasons if g else None,
        "engine": e.summary() if e else None,
        "gateway": g.summary() if g else None,
        "engine_recheck_tok_s": round(e2.tok_per_s, 1) if e2 else None,
        "engine_recheck": e2.summary() if e2 else None,
        "inline_tok_s": round(i.tok_per_s, 1) if i else None,
        "inline_ratio": round(i.tok_per_s / e.tok_per_s, 3) if e and i and e.stats.tokens else None,
        "inline": i.summary() if i else None,
    }


def _find(windows: list[Window], streams: int) -> Window | None:
    return next((w for w in windows if w.streams == streams), None)


def render(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The header line, the table, each window's CPU and the errors."""
    env, model, work = results["env"], results["model"], results["workload"]
    dtype = results["settings"]["dtype"]
    lines = [
        f"{env.get('gpu', results['settings']['device'])} | torch {env['torch']} | "
        f"transformers {env['transformers']} | model {model['shape']} "
        f"({model['params_b']} B params, vocab {model['vocab_size']}, {dtype}) | "
        f"prompt {work['prompt_tokens']['mean']} tok, {work['max_tokens']} new, greedy | "
        f"window {work['window_s']:.0f} s after {work['warmup_s']:.0f} s",
        table(_HEADERS, [[_cell(r[key]) for key in _COLUMNS] for r in rows]),
    ]
    for r in rows:
        for path in ("engine", "gateway", "engine_recheck", "inline"):
            if r[path]:
                cpu = r[path]["extra"].get("cpu", {})
                lines.append(
                    f"n={r['streams']} {path}: {r[path]['tok_per_s']} tok/s, process "
                    f"{cpu.get('process_cores')} cores, worker {cpu.get('worker_cores')} "
                    f"cores, busiest threads {cpu.get('busiest_threads')}"
                )
    lines.extend(f"ERROR: {message}" for message in results["errors"])
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def final(results: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last line's figures (`RESULT {...}`): what a script reading the log wants."""
    return {
        "ratio": {str(r["streams"]): r["ratio"] for r in rows},
        "engine_tok_s": {str(r["streams"]): r["engine_tok_s"] for r in rows},
        "gateway_tok_s": {str(r["streams"]): r["gateway_tok_s"] for r in rows},
        "ttft_p50_ms": {
            str(r["streams"]): [r["engine_ttft_p50_ms"], r["gateway_ttft_p50_ms"]] for r in rows
        },
        "inline_ratio": {str(r["streams"]): r["inline_ratio"] for r in rows},
        "gpu": results["env"].get("gpu"),
        "elapsed_s": results["elapsed_s"],
    }
