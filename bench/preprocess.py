"""Prompt preprocessing (chat template + tokenization) of 1000-token prompts, in-process.

Measured on the gateway's own `PromptRenderer`, built as the app builds it (the
embedded model's tokenizer and template, its default thread pool), so that
nothing but rendering is timed:

  service    one render at a time: what a single prompt costs, no queueing
  cpu        this process's CPU per render, one at a time; beside it, on the same
             prompts, the CPU of what the gateway did before: transformers'
             `apply_chat_template(tokenize=False)`, then the Rust tokenizer's `encode`
  burst      `concurrency` renders awaited at once from one event loop, as when
             that many requests arrive together: each one's latency includes
             its wait for the pool, so the median is about half the burst's
             total time, and the total is bounded by the machine's cores
  workers    the same burst with `render_workers` processes (1, 2, ...) rendering
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import fmt, ms, percentile, table
from bench.server import machine_busy_seconds
from bench.workload import prompt_text

if TYPE_CHECKING:
    from gateway.serving.prompts import PromptRenderer

METHOD = (
    "in-process: gateway.serving.prompts.PromptRenderer.render (thread pool as the app builds it), "
    "{n} renders awaited at once; latency = call to ids, queueing for the pool included; "
    "cpu = process CPU per render_sync, transformers = apply_chat_template + encode"
)

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Preprocessing:
    concurrency: int
    prompt_tokens: int
    service: list[float]
    burst: list[float]
    burst_seconds: float
    cpu_seconds: float  # this process's, during the burst
    other_seconds: float  # every other process's, during the burst
    cpu_per_prompt: float  # render_sync, one at a time, of prompts it has not seen
    seen_cpu_per_prompt: float  # the same prompts again: their text's ids are remembered
    transformers_cpu_per_prompt: float  # the same prompts as the gateway rendered them before
    worker_bursts: dict[int, tuple[list[float], float]]  # workers: (latencies, seconds)

    def figures(self) -> dict[str, float]:
        figures = {
            "preprocess_p50_ms": ms(percentile(self.burst, 50)),
            "preprocess_p99_ms": ms(percentile(self.burst, 99)),
            "preprocess_service_p50_ms": ms(percentile(self.service, 50)),
            "preprocess_service_p99_ms": ms(percentile(self.service, 99)),
            "preprocess_renders_per_s": self.concurrency / self.burst_seconds,
            "preprocess_cores": self.cpu_seconds / self.burst_seconds,
            "preprocess_other_cores": self.other_seconds / self.burst_seconds,
            "preprocess_cpu_us": self.cpu_per_prompt * 1e6,
            "preprocess_seen_cpu_us": self.seen_cpu_per_prompt * 1e6,
            "preprocess_transformers_cpu_us": self.transformers_cpu_per_prompt * 1e6,
        }
        for workers, (burst, seconds) in self._bursts().items():
            figures[f"preprocess_workers{workers}_p50_ms"] = ms(percentile(burst, 50))
            figures[f"preprocess_workers{workers}_renders_per_s"] = self.concurrency / seconds
        return figures

    def _bursts(self) -> dict[int, tuple[list[float], float]]:
        return {0: (self.burst, self.burst_seconds), **self.worker_bursts}

    def render(self) -> str:
        f = self.figures()
        burst = table(
            ["prompts", "tokens", "service p50", "service p99", "burst p50", "burst p99",
             "renders/s", "cores", "other cores"],
            [[str(self.concurrency), str(self.prompt_tokens),
              *(fmt(f[k], 2) for k in ("preprocess_service_p50_ms", "preprocess_service_p99_ms",
                                       "preprocess_p50_ms", "preprocess_p99_ms")),
              fmt(f["preprocess_renders_per_s"], 0), fmt(f["preprocess_cores"], 2),
              fmt(f["preprocess_other_cores"], 2)]],
        )  # fmt: skip
        cpu = table(
            ["cpu us/prompt", "seen before", "transformers us/prompt", "ratio"],
            [[fmt(f["preprocess_cpu_us"], 0), fmt(f["preprocess_seen_cpu_us"], 0),
              fmt(f["preprocess_transformers_cpu_us"], 0),
              fmt(f["preprocess_transformers_cpu_us"] / f["preprocess_cpu_us"], 1)]],
        )  # fmt: skip
        workers = table(
            ["render workers", "burst p50", "renders/s"],
            [[str(n), fmt(f[f"preprocess_workers{n}_p50_ms"], 2),
              fmt(f[f"preprocess_workers{n}_renders_per_s"], 0)] for n in self._bursts()],
        )  # fmt: skip
        return "\n\n".join([burst, cpu, workers])


def measure(
    concurrency: int = 2048, prompt_tokens: int = 1000, render_workers: Sequence[int] = (1, 2)
) -> Preprocessing:
    # Imported here: transformers takes seconds to import, and only this needs it.
    from gateway.serving.model_files import resolve_model_dir
    from gateway.serving.prompts import PromptRenderer
    from gateway.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    renderer = PromptRenderer(model_dir, settings.chat_template)
    try:
        rng = random.Random(2048)
        words = _words_for(renderer, prompt_tokens)

        def fresh(count: int) -> list[Messages]:
            """Prompts no renderer has seen: nothing of their text is remembered."""
            return [_messages(prompt_text(words, rng)) for _ in range(count)]

        prompts, alone, timed = fresh(concurrency), fresh(200), fresh(200)
        tokens = len(renderer.render_sync(alone[0]))
        service = _latencies(renderer.render_sync, alone[1:])
        cpu_per_prompt = _cpu_per_call(renderer.render_sync, timed)
        seen_cpu_per_prompt = _cpu_per_call(renderer.render_sync, timed)
        before = _transformers_cpu(model_dir, settings.chat_template, timed, renderer)
        cpu, machine, began = time.process_time(), machine_busy_seconds(), time.perf_counter()
        burst = asyncio.run(_burst(renderer, prompts))
        burst_seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - cpu
        others = machine_busy_seconds() - machine - cpu_seconds
    finally:
        renderer.close()
    worker_bursts = {
        n: _worker_burst(model_dir, settings.chat_template, n, fresh(concurrency), fresh(n * 8))
        for n in render_workers
    }
    return Preprocessing(
        concurrency, tokens, service, burst, burst_seconds, cpu_seconds, others,
        cpu_per_prompt, seen_cpu_per_prompt, before, worker_bursts,
    )  # fmt: skip


def _latencies(render: Callable[[Messages], object], prompts: list[Messages]) -> list[float]:
    latencies = []
    for messages in prompts:
        began = time.perf_counter()
        render(messages)
        latencies.append(time.perf_counter() - began)
    return latencies


def _cpu_per_call(render: Callable[[Messages], object], prompts: list[Messages]) -> float:
    began = time.process_time()
    for messages in prompts:
        render(messages)
    return (time.process_time() - began) / len(prompts)


def _transformers_cpu(
    model_dir: Path, chat_template: Path | None, prompts: list[Messages], renderer: PromptRenderer
) -> float:
    """CPU per prompt of what the gateway did before: transformers renders, Rust encodes."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    if chat_template is not None:
        tokenizer.chat_template = chat_template.read_text()
    backend = tokenizer.backend_tokenizer

    def render(messages: Messages) -> list[int]:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids: list[int] = backend.encode(text, add_special_tokens=False).ids
        return ids

    assert render(prompts[0]) == renderer.render_sync(prompts[0]), "not the same prompt"
    render(prompts[0])  # any lazy set-up out of the measurement
    return _cpu_per_call(render, prompts)


def _worker_burst(
    model_dir: Path,
    chat_template: Path | None,
    workers: int,
    prompts: list[Messages],
    warmup: list[Messages],
) -> tuple[list[float], float]:
    from gateway.serving.prompts import PromptRenderer

    renderer = PromptRenderer(model_dir, chat_template, render_workers=workers)
    try:
        asyncio.run(_burst(renderer, warmup))  # each worker's first renders, out of the measure
        began = time.perf_counter()
        burst = asyncio.run(_burst(renderer, prompts))
        return burst, time.perf_counter() - began
    finally:
        renderer.close()


async def _burst(renderer: PromptRenderer, prompts: list[Messages]) -> list[float]:
    async def one(messages: Messages) -> float:
        began = time.perf_counter()
        await renderer.render(messages)
        return time.perf_counter() - began

    return list(await asyncio.gather(*(one(messages) for messages in prompts)))


def _words_for(renderer: PromptRenderer, prompt_tokens: int) -> int:
    """How many words make a rendered prompt of `prompt_tokens` tokens (the template adds some)."""
    overhead = len(renderer.render_sync(_messages("the"))) - 1
    return max(1, prompt_tokens - overhead)


def _messages(text: str) -> Messages:
    return [{"role": "user", "content": text}]
