"""The embedded engine on one GPU: the gateway's delivered throughput over the engine's own.

On a GPU machine with no network (docs/gpu-embedded.md has the whole recipe):

    PYTHONUNBUFFERED=1 python -m bench.gpu --tokenizer-dir .gpu_tok --out "$OUT"

1. `model`: builds a random-weight Llama in bf16 (the 1B-like shape: hidden
   2048, 16 layers, 32 heads / 8 KV heads, intermediate 8192) whose vocabulary
   is the carried tokenizer's (the embedded SmolLM2's), and saves it with that
   tokenizer, its chat template and generation config into `--work`.
2. `engine_run`: `TransformersEngine` in this process, N streams of `generate()`.
3. `gateway_run`: `trtllm-gateway serve` in a subprocess with the same engine
   settings, N streaming chat completions from several client processes.
4. `report`: the table, per-window JSON, `results.json` and a last `RESULT` line.

Both paths are closed loops over the same `workload`: each stream sends a
request (a chat prompt of `--prompt-len` tokens after the template,
`--max-tokens` new tokens, greedy), reads it to the end and sends the next.
Each stream's first request asks for a random 1..max_tokens tokens, so that the
streams do not march in lockstep. Both are counted by `bench.load`'s rules: only
tokens that arrive inside the window (after the warm-up) count, and a request
still running at the window's end is cut there. EOS ends the engine's requests
never (no stop ids) and the gateway's only if the random model emits it: the
finish reasons are reported.

`--shape tiny --device cpu --dtype float32` runs the whole thing on a laptop.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()


def elapsed() -> float:
    """Seconds since this benchmark started (the `--deadline` counts from here)."""
    return time.monotonic() - STARTED


def log(message: str) -> None:
    print(f"[{elapsed():7.1f}s] {message}", flush=True)
