"""The embedded engine on one GPU: the gateway's delivered throughput over the engine's own.

On a GPU machine with no network (docs/gpu-embedded.md has the whole recipe):

    PYTHONUNBUFFERED=1 python -m bench.gpu_embedded --tokenizer-dir .gpu_tok --out "$OUT"

1. Builds a random-weight Llama model in bf16 (the 1B-like shape: hidden 2048,
   16 layers, 32 heads / 8 KV heads, intermediate 8192) whose vocabulary is the
   carried tokenizer's (the embedded SmolLM2's), and saves it with that
   tokenizer, its chat template and generation config into `--work`.
2. Engine: `TransformersEngine` in this process, N streams of `generate()`.
3. Gateway: `trtllm-gateway serve` in a subprocess with the same engine
   settings, N streaming chat completions from several client processes.

Both are closed loops with the same workload: each stream sends a request
(a chat prompt of `--prompt-len` tokens after the template, `--max-tokens` new
tokens, greedy), reads it to the end and sends the next. Each stream's first
request asks for a random 1..max_tokens tokens, so that the streams do not
march in lockstep. Only tokens that arrive inside the window (after the
warm-up) count. The engine's stream sees token ids; a gateway client sees
content chunks, and its tokens are the request's `usage.completion_tokens`
spread over its chunks (a request cut at the window's end gets the mean
tokens per chunk). EOS ends the engine's requests never (no stop ids) and the
gateway's only if the random model emits it: the finish reasons are reported.

`--shape tiny --device cpu --dtype float32` runs the whole thing on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    "1b": {
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
    },
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)
SERVED_NAME = "bench-random-llama"
T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------------
# The model and the prompts
# ------------------------------------------------------------------------------------------


def build_model(tokenizer_dir: Path, model_dir: Path, shape: str, device: str) -> dict[str, Any]:
    """A random-weight Llama in bf16 with the tokenizer's vocabulary, saved with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    generation = json.loads((tokenizer_dir / "generation_config.json").read_text())
    shape_kwargs: dict[str, Any] = dict(SHAPES[shape])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=generation.get("bos_token_id"),
        eos_token_id=generation.get("eos_token_id"),
        pad_token_id=generation.get("pad_token_id"),
        **shape_kwargs,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    params = sum(p.numel() for p in model.parameters())
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    for name in TOKENIZER_FILES:  # after save_pretrained: the carried generation config wins
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, model_dir / name)
    info = {
        "shape": shape,
        **SHAPES[shape],
        "vocab_size": config.vocab_size,
        "params_b": round(params / 1e9, 3),
        "dtype": "bfloat16",
        "eos_token_id": config.eos_token_id,
        "build_and_save_s": round(time.monotonic() - started, 1),
    }
    log(f"model: {info} -> {model_dir}")
    return info


def make_prompts(
    model_dir: Path, count: int, prompt_len: int, seed: int
) -> list[tuple[str, list[int]]]:
    """`count` distinct user messages whose templated prompt is `prompt_len` tokens (or close)."""
    from gateway.prompts import PromptRenderer

    renderer = PromptRenderer(model_dir)
    try:
        vocab = renderer._backend.get_vocab()
        words = sorted(
            {t[1:] for t in vocab if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha()}
        )
        words = [w for w in words if 3 <= len(w) <= 10]
        rng = random.Random(seed)

        def render(content: list[str]) -> list[int]:
            return renderer.render_sync([{"role": "user", "content": " ".join(content)}])

        overhead = len(render(["x"])) - 1
        prompts = []
        for _ in range(count):
            content = [rng.choice(words) for _ in range(max(1, prompt_len - overhead))]
            ids = render(content)
            for _ in range(8):  # words are mostly one token each: converges in a step or two
                if len(ids) == prompt_len:
                    break
                if len(ids) < prompt_len:
                    content.append(rng.choice(words))
                elif len(content) > 1:
                    content.pop()
                ids = render(content)
            prompts.append((" ".join(content), ids))
        return prompts
    finally:
        renderer.close()


# ------------------------------------------------------------------------------------------
# What a window measured
# ------------------------------------------------------------------------------------------


@dataclass
class Window:
    path: str  # "engine" or "gateway"
    streams: int
    seconds: float
    tokens: float = 0.0  # delivered inside the window
    requests_sent: int = 0  # sent inside the window
    requests_finished: int = 0  # finished inside the window
    finish_reasons: dict[str, int] = field(default_factory=dict)
    completion_tokens_per_finished: float = 0.0
    ttft_ms: list[float] = field(default_factory=list)  # requests sent inside the window
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.seconds

    def summary(self) -> dict[str, Any]:
        ttft = sorted(self.ttft_ms)
        out = asdict(self)
        del out["ttft_ms"]
        out.update(
            tokens=round(self.tokens, 1),
            tok_per_s=round(self.tok_per_s, 1),
            completion_tokens_per_finished=round(self.completion_tokens_per_finished, 2),
            ttft_p50_ms=round(statistics.median(ttft), 1) if ttft else None,
            ttft_p90_ms=round(ttft[int(0.9 * (len(ttft) - 1))], 1) if ttft else None,
            ttft_count=len(ttft),
            errors=self.errors[:5],
            error_count=len(self.errors),
        )
        return out


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each thread of `pid` (Linux /proc): {tid: (name, seconds)}."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def cpu_use(
    pid: int,
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    seconds: float,
) -> dict[str, Any]:
    """Cores used over the window by the process, and by its busiest threads (main: the loop)."""
    used = []
    for tid, (name, total) in after.items():
        spent = total - before.get(tid, (name, 0.0))[1]
        label = f"main:{name}" if tid == pid else name
        used.append((spent / seconds, label))
    used.sort(reverse=True)
    return {
        "process_cores": round(sum(c for c, _ in used), 2),
        "busiest_threads": [[label, round(c, 2)] for c, label in used[:4]],
    }


# ------------------------------------------------------------------------------------------
# The engine in this process
# ------------------------------------------------------------------------------------------


async def measure_engine(
    engine: Any,
    prompts: list[tuple[str, list[int]]],
    streams: int,
    max_tokens: int,
    warmup_s: float,
    window_s: float,
    seed: int,
) -> Window:
    from engines.base import GenerationRequest, SamplingParams, TokenDelta

    start = time.monotonic()
    begin, end = start + warmup_s, start + warmup_s + window_s
    window = Window("engine", streams, window_s)
    reasons: Counter[str] = Counter()
    finished_tokens: list[int] = []

    async def stream(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        for k in range(1_000_000):
            if time.monotonic() >= end:
                return
            ids = prompts[(index * 7919 + k) % len(prompts)][1]
            wanted = rng.randint(1, max_tokens) if k == 0 else max_tokens
            sampling = SamplingParams(wanted, temperature=0.0, stop_token_ids=frozenset())
            request = GenerationRequest(f"s{index}-{k}", ids, sampling)
            sent = time.monotonic()
            counted = begin <= sent < end
            window.requests_sent += counted
            first = True
            async with contextlib.aclosing(engine.generate(request)) as events:
                async for event in events:
                    now = time.monotonic()
                    if now >= end:
                        return
                    if isinstance(event, TokenDelta):
                        if first and counted:
                            window.ttft_ms.append(1000 * (now - sent))
                        first = False
                        if now >= begin:
                            window.tokens += len(event.token_ids)
                    elif now >= begin:
                        window.requests_finished += 1
                        reasons[event.reason.value] += 1
                        finished_tokens.append(event.completion_tokens)

    tasks = [asyncio.create_task(stream(i)) for i in range(streams)]
    await asyncio.sleep(max(0.0, begin - time.monotonic()))
    cpu_before = thread_cpu(os.getpid())
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    window.extra["cpu"] = cpu_use(os.getpid(), cpu_before, thread_cpu(os.getpid()), window_s)
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            window.errors.append(repr(result))
    window.finish_reasons = dict(reasons)
    if finished_tokens:
        window.completion_tokens_per_finished = statistics.mean(finished_tokens)
    for _ in range(300):  # aborted requests leave within a step or two
        stats = engine.stats()
        if stats.running == 0 and stats.waiting == 0:
            break
        await asyncio.sleep(0.1)
    return window


async def run_engine(
    model_dir: Path,
    settings: Any,
    prompts: list[tuple[str, list[int]]],
    args: argparse.Namespace,
    concurrencies: list[int],
    seed: int,
) -> tuple[list[Window], float]:
    from engines.transformers_cb import TransformersEngine

    engine = TransformersEngine(model_dir, settings)
    started = time.monotonic()
    await engine.start()
    load_s = time.monotonic() - started
    log(f"engine started in {load_s:.1f}s: {engine.limits()}")
    windows = []
    try:
        for streams in concurrencies:
            if not time_left(args, args.warmup + args.window + 15):
                log(f"engine n={streams}: skipped, too little time left")
                continue
            window = await measure_engine(
                engine, prompts, streams, args.max_tokens, args.warmup, args.window, seed
            )
            log(f"ENGINE n={streams}: {json.dumps(window.summary())}")
            windows.append(window)
    finally:
        await engine.close()
        del engine
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return windows, load_s


# ------------------------------------------------------------------------------------------
# The gateway in a subprocess, and its clients in several processes
# ------------------------------------------------------------------------------------------


def start_gateway(
    model_dir: Path, settings: Any, port: int, log_path: Path
) -> tuple[subprocess.Popen[bytes], float]:
    env = dict(os.environ)
    env.update(
        GATEWAY_MODEL=str(model_dir),
        GATEWAY_SERVED_MODEL_NAME=SERVED_NAME,
        GATEWAY_ENGINE="transformers",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_SHUTDOWN_GRACE_SECONDS="2",
    )
    for key, value in settings.model_dump(exclude_none=True).items():
        env[f"GATEWAY_TRANSFORMERS__{key.upper()}"] = str(value)
    code = "import sys; from gateway.cli import main; main(sys.argv[1:])"
    started = time.monotonic()
    with log_path.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = started + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}: see {log_path}")
        ready = f"http://127.0.0.1:{port}/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as answer:
            if answer.status == 200:
                return process, time.monotonic() - started
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the gateway was not ready in 300 s: see {log_path}")


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def gateway_running(port: int) -> float:
    """gateway_num_requests_running from /metrics (-1 if unreadable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (OSError, urllib.error.URLError):
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_num_requests_running")
    )


def _new_record() -> dict[str, Any]:
    return {
        "sent": time.monotonic(),
        "ttft": None,
        "chunks": 0,
        "chunks_in": 0,
        "usage": None,
        "finish": None,
        "error": None,
    }


async def _one_completion(
    port: int, body: bytes, begin: float, end: float, record: dict[str, Any]
) -> None:
    """One streamed chat completion on its own connection; what a client saw goes to `record`.

    Cancelled at the window's end, `record` keeps what arrived until then.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        record["sent"] = time.monotonic()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        if status != 200:
            record["error"] = f"HTTP {status}: {(await reader.read(300))[:300]!r}"
            return
        pending = b""
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
            pending += data
            *lines, pending = pending.split(b"\n")
            now = time.monotonic()
            for raw in lines:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                event = json.loads(payload)
                if "error" in event:
                    record["error"] = str(event["error"])[:300]
                    continue
                if event.get("usage"):
                    record["usage"] = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        if record["ttft"] is None:
                            record["ttft"] = now - record["sent"]
                        record["chunks"] += 1
                        record["chunks_in"] += begin <= now < end
                    if choice.get("finish_reason"):
                        record["finish"] = choice["finish_reason"]
    finally:
        writer.close()


def client_process(
    port: int,
    stream_ids: list[int],
    contents: list[str],
    max_tokens: int,
    start: float,
    begin: float,
    end: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Runs in a client process: its share of the streams, closed loop, until `end`."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    return asyncio.run(_client(port, stream_ids, contents, max_tokens, start, begin, end, seed))


async def _client(
    port: int,
    stream_ids: list[int],
    contents: list[str],
    max_tokens: int,
    start: float,
    begin: float,
    end: float,
    seed: int,
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []

    async def stream(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        for k in range(1_000_000):
            if time.monotonic() >= end:
                return
            wanted = rng.randint(1, max_tokens) if k == 0 else max_tokens
            body = json.dumps(
                {
                    "model": SERVED_NAME,
                    "messages": [
                        {"role": "user", "content": contents[(index * 7919 + k) % len(contents)]}
                    ],
                    "max_tokens": wanted,
                    "temperature": 0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            ).encode()
            record = _new_record()
            records.append(record)
            try:
                await _one_completion(port, body, begin, end, record)
            except Exception as error:  # a refused connection, a broken stream
                record["error"] = repr(error)[:300]
            if record["error"]:
                await asyncio.sleep(0.2)

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    tasks = [asyncio.create_task(stream(i)) for i in stream_ids]
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    # Requests still running are cut here: their chunks so far count, their usage is unknown.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return records


def measure_gateway(
    port: int, pid: int, contents: list[str], streams: int, args: argparse.Namespace, seed: int
) -> Window:
    start = time.monotonic() + 3.0  # the client processes spawn and import meanwhile
    begin, end = start + args.warmup, start + args.warmup + args.window
    shares = [list(range(p, streams, args.client_procs)) for p in range(args.client_procs)]
    shares = [s for s in shares if s]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(shares)) as pool:
        pending = pool.starmap_async(
            client_process,
            [(port, s, contents, args.max_tokens, start, begin, end, seed) for s in shares],
        )
        time.sleep(max(0.0, begin - time.monotonic()))
        cpu_before = thread_cpu(pid)
        time.sleep(max(0.0, end - time.monotonic()))
        cpu = cpu_use(pid, cpu_before, thread_cpu(pid), args.window)
        parts = pending.get()
    records = [r for part in parts for r in part]
    window = Window("gateway", streams, args.window)
    complete = [r for r in records if r["usage"] is not None and r["chunks"]]
    per_chunk = (
        sum(r["usage"] for r in complete) / sum(r["chunks"] for r in complete) if complete else 1.0
    )
    reasons: Counter[str] = Counter()
    finished_tokens = []
    for r in records:
        if r["usage"] is not None and r["chunks"]:
            window.tokens += r["usage"] * r["chunks_in"] / r["chunks"]
        else:
            window.tokens += per_chunk * r["chunks_in"]
        counted = begin <= r["sent"] < end
        window.requests_sent += counted
        if counted and r["ttft"] is not None:
            window.ttft_ms.append(1000 * r["ttft"])
        # Its usage arrived, so it finished before `end`; after `begin` if it had
        # chunks in the window or was sent inside it.
        finished = r["finish"] is not None and r["usage"] is not None
        if finished and (r["chunks_in"] or counted):
            window.requests_finished += 1
            reasons[r["finish"]] += 1
            finished_tokens.append(r["usage"])
        if r["error"]:
            window.errors.append(r["error"])
    window.finish_reasons = dict(reasons)
    if finished_tokens:
        window.completion_tokens_per_finished = statistics.mean(finished_tokens)
    window.extra = {
        "cpu": cpu,
        "tokens_per_content_chunk": round(per_chunk, 3),
        "client_processes": len(shares),
        "records": len(records),
    }
    return window


def run_gateway(
    model_dir: Path,
    settings: Any,
    contents: list[str],
    args: argparse.Namespace,
    concurrencies: list[int],
    seed: int,
    out: Path,
) -> tuple[list[Window], float]:
    port = free_port()
    process, load_s = start_gateway(model_dir, settings, port, out / "gateway.log")
    log(f"gateway ready on port {port} in {load_s:.1f}s (pid {process.pid})")
    windows = []
    try:
        for streams in concurrencies:
            if not time_left(args, args.warmup + args.window + 20):
                log(f"gateway n={streams}: skipped, too little time left")
                continue
            window = measure_gateway(port, process.pid, contents, streams, args, seed)
            log(f"GATEWAY n={streams}: {json.dumps(window.summary())}")
            windows.append(window)
            for _ in range(150):  # the cut streams' requests are aborted on disconnect
                if gateway_running(port) <= 0:
                    break
                time.sleep(0.2)
    finally:
        stop_gateway(process)
        log(f"gateway stopped ({process.returncode})")
    return windows, load_s


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_left(args: argparse.Namespace, needed: float) -> bool:
    deadline: float = args.deadline
    return time.monotonic() - T0 + needed < deadline


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "cpus": os.cpu_count(),
    }
    from importlib.metadata import version

    for name in ("fastapi", "uvicorn", "sse-starlette", "pydantic", "huggingface-hub"):
        with contextlib.suppress(Exception):
            env[name] = version(name)
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'streams':>7} {'engine tok/s':>12} {'gateway tok/s':>13} {'ratio':>6} "
        f"{'engine TTFT p50 ms':>18} {'gateway TTFT p50 ms':>19}  finish reasons (gateway)"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['streams']:>7} {r['engine_tok_s']!s:>12} {r['gateway_tok_s']!s:>13} "
            f"{r['ratio']!s:>6} {r['engine_ttft_p50_ms']!s:>18} {r['gateway_ttft_p50_ms']!s:>19}  "
            f"{r['gateway_finish_reasons']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_embedded")
    parser.add_argument("--tokenizer-dir", type=Path, default=Path(".gpu_tok"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_embedded"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "."))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
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
    parser.add_argument("--deadline", type=float, default=500.0, help="seconds for everything")
    args = parser.parse_args(argv)
    concurrencies = [int(n) for n in args.streams.split(",")]

    from engines.settings import TransformersSettings

    args.out.mkdir(parents=True, exist_ok=True)
    settings = TransformersSettings(
        device=args.device,
        dtype=args.dtype,
        num_blocks=args.num_blocks,
        block_size=args.block_size,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_size=args.max_batch_size,
    )
    results: dict[str, Any] = {
        "env": environment(args.device),
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
    log(f"ENV {json.dumps(results['env'])}")
    model_dir = args.work / "model"
    results["model"] = build_model(args.tokenizer_dir, model_dir, args.shape, args.device)
    prompts = make_prompts(model_dir, args.prompts, args.prompt_len, seed=1)
    lengths = [len(ids) for _, ids in prompts]
    results["workload"]["prompt_tokens"] = {
        "min": min(lengths),
        "mean": round(statistics.mean(lengths), 1),
        "max": max(lengths),
    }
    log(f"{len(prompts)} prompts: {results['workload']['prompt_tokens']} tokens")

    engine_windows, engine_load = asyncio.run(
        run_engine(model_dir, settings, prompts, args, concurrencies, seed=2)
    )
    results["engine_load_s"] = round(engine_load, 1)
    gateway_windows: list[Window] = []
    try:
        gateway_windows, gateway_load = run_gateway(
            model_dir, settings, [c for c, _ in prompts], args, concurrencies, 3, args.out
        )
        results["gateway_load_s"] = round(gateway_load, 1)
    except Exception as failure:
        results["errors"].append(f"gateway: {failure!r}")
        log(f"gateway failed: {failure!r}")
    again: list[Window] = []
    if args.recheck and time_left(args, args.warmup + args.window + 40):
        # The same engine windows once more: how far the machine drifted meanwhile.
        again, _ = asyncio.run(run_engine(model_dir, settings, prompts, args, concurrencies, 4))

    rows: list[dict[str, Any]] = []
    for streams in concurrencies:
        e = next((w for w in engine_windows if w.streams == streams), None)
        g = next((w for w in gateway_windows if w.streams == streams), None)
        e2 = next((w for w in again if w.streams == streams), None)
        rows.append(
            {
                "streams": streams,
                "engine_tok_s": round(e.tok_per_s, 1) if e else None,
                "gateway_tok_s": round(g.tok_per_s, 1) if g else None,
                "ratio": round(g.tok_per_s / e.tok_per_s, 3) if e and g and e.tokens else None,
                "engine_ttft_p50_ms": e.summary()["ttft_p50_ms"] if e else None,
                "gateway_ttft_p50_ms": g.summary()["ttft_p50_ms"] if g else None,
                "gateway_finish_reasons": g.finish_reasons if g else None,
                "engine": e.summary() if e else None,
                "gateway": g.summary() if g else None,
                "engine_recheck_tok_s": round(e2.tok_per_s, 1) if e2 else None,
                "engine_recheck": e2.summary() if e2 else None,
            }
        )
    results["rows"] = rows
    results["elapsed_s"] = round(time.monotonic() - T0, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print()
    env, model = results["env"], results["model"]
    print(
        f"{env.get('gpu', args.device)} | torch {env['torch']} | "
        f"transformers {env['transformers']} | model {args.shape} "
        f"({model['params_b']} B params, vocab {model['vocab_size']}, bf16) | "
        f"prompt {results['workload']['prompt_tokens']['mean']} tok, "
        f"{args.max_tokens} new, greedy | window {args.window:.0f} s after {args.warmup:.0f} s"
    )
    print_table(rows)
    for r in rows:
        for path in ("engine", "gateway", "engine_recheck"):
            if r[path]:
                cpu = r[path]["extra"].get("cpu", {})
                print(
                    f"n={r['streams']} {path}: {r[path]['tok_per_s']} tok/s, process "
                    f"{cpu.get('process_cores')} cores, busiest threads "
                    f"{cpu.get('busiest_threads')}"
                )
    for message in results["errors"]:
        print(f"ERROR: {message}")
    final = {
        "ratio": {str(r["streams"]): r["ratio"] for r in rows},
        "engine_tok_s": {str(r["streams"]): r["engine_tok_s"] for r in rows},
        "gateway_tok_s": {str(r["streams"]): r["gateway_tok_s"] for r in rows},
        "gpu": results["env"].get("gpu"),
        "elapsed_s": results["elapsed_s"],
    }
    print("RESULT " + json.dumps(final))
    return 0 if all(r["ratio"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
