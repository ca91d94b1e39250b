"""Prompt preprocessing (chat template + tokenization) of 1000-token prompts, in-process.

Measured on the gateway's own `PromptRenderer`, built as the app builds it (the
embedded model's tokenizer and template, its default thread pool), so that
nothing but rendering is timed:

  service    one render at a time: what a single prompt costs, no queueing
  burst      `concurrency` renders awaited at once from one event loop, as when
             that many requests arrive together: each one's latency includes
             its wait for the pool, so the median is about half the burst's
             total time, and the total is bounded by the machine's cores
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.report import fmt, ms, percentile, table
from bench.server import machine_busy_seconds
from bench.workload import prompt_text

if TYPE_CHECKING:
    from gateway.prompts import PromptRenderer

METHOD = (
    "in-process: gateway.prompts.PromptRenderer.render (thread pool as the app builds it), "
    "{n} renders awaited at once; latency = call to ids, queueing for the pool included"
)


@dataclass(frozen=True, slots=True)
class Preprocessing:
    concurrency: int
    prompt_tokens: int
    service: list[float]
    burst: list[float]
    burst_seconds: float
    cpu_seconds: float  # this process's, during the burst
    other_seconds: float  # every other process's, during the burst

    def figures(self) -> dict[str, float]:
        return {
            "preprocess_p50_ms": ms(percentile(self.burst, 50)),
            "preprocess_p99_ms": ms(percentile(self.burst, 99)),
            "preprocess_service_p50_ms": ms(percentile(self.service, 50)),
            "preprocess_service_p99_ms": ms(percentile(self.service, 99)),
            "preprocess_renders_per_s": self.concurrency / self.burst_seconds,
            "preprocess_cores": self.cpu_seconds / self.burst_seconds,
            "preprocess_other_cores": self.other_seconds / self.burst_seconds,
        }

    def render(self) -> str:
        f = self.figures()
        return table(
            ["prompts", "tokens", "service p50", "service p99", "burst p50", "burst p99",
             "renders/s", "cores", "other cores"],
            [[str(self.concurrency), str(self.prompt_tokens),
              *(fmt(f[k], 2) for k in ("preprocess_service_p50_ms", "preprocess_service_p99_ms",
                                       "preprocess_p50_ms", "preprocess_p99_ms")),
              fmt(f["preprocess_renders_per_s"], 0), fmt(f["preprocess_cores"], 2),
              fmt(f["preprocess_other_cores"], 2)]],
        )  # fmt: skip


def measure(concurrency: int = 2048, prompt_tokens: int = 1000) -> Preprocessing:
    # Imported here: transformers takes seconds to import, and only this needs it.
    from gateway.model_files import resolve_model_dir
    from gateway.prompts import PromptRenderer
    from gateway.settings import Settings

    settings = Settings()
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    renderer = PromptRenderer(model_dir, settings.chat_template)
    try:
        rng = random.Random(2048)
        words = _words_for(renderer, prompt_tokens)
        prompts = [_messages(prompt_text(words, rng)) for _ in range(concurrency)]
        tokens = len(renderer.render_sync(prompts[0]))
        service = []
        for messages in prompts[:200]:
            began = time.perf_counter()
            renderer.render_sync(messages)
            service.append(time.perf_counter() - began)
        cpu, machine, began = time.process_time(), machine_busy_seconds(), time.perf_counter()
        burst = asyncio.run(_burst(renderer, prompts))
        burst_seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - cpu
        others = machine_busy_seconds() - machine - cpu_seconds
    finally:
        renderer.close()
    return Preprocessing(concurrency, tokens, service, burst, burst_seconds, cpu_seconds, others)


async def _burst(renderer: PromptRenderer, prompts: list[list[dict[str, str]]]) -> list[float]:
    async def one(messages: list[dict[str, str]]) -> float:
        began = time.perf_counter()
        await renderer.render(messages)
        return time.perf_counter() - began

    return list(await asyncio.gather(*(one(messages) for messages in prompts)))


def _words_for(renderer: PromptRenderer, prompt_tokens: int) -> int:
    """How many words make a rendered prompt of `prompt_tokens` tokens (the template adds some)."""
    overhead = len(renderer.render_sync(_messages("the"))) - 1
    return max(1, prompt_tokens - overhead)


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
