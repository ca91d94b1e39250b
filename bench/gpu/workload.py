"""The requests both paths send: templated prompts of an exact length, and their max tokens.

The engine gets a prompt's token ids as the gateway renders them
(`PromptRenderer`); the gateway's clients send its user message, which the
gateway renders to the same ids. Every request asks for `max_tokens`, except a
stream's first, whose random length staggers streams that start together.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.workload import WORDS, chat_body


@dataclass(frozen=True, slots=True)
class Prompt:
    content: str  # the user message, as the gateway's clients send it
    ids: list[int]  # after the chat template, as the engine gets it


@dataclass(frozen=True, slots=True)
class Workload:
    prompts: tuple[Prompt, ...]
    max_tokens: int
    first_max_tokens: tuple[int, ...]  # each stream's first request, one per stream

    def request(self, stream: int, number: int) -> tuple[Prompt, int]:
        """A stream's request `number` (0, 1, ...), in the order `bench.load` sends bodies."""
        if number == 0:
            return self.prompts[stream % len(self.prompts)], self.first_max_tokens[stream]
        return self.prompts[(stream + number) % len(self.prompts)], self.max_tokens

    def chat_bodies(self, model: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The same requests as HTTP bodies: `LoadPlan.bodies` and `LoadPlan.first_bodies`."""
        bodies = tuple(chat_body(model, p.content, self.max_tokens, 0.0) for p in self.prompts)
        first = tuple(
            chat_body(model, self.request(stream, 0)[0].content, tokens, 0.0)
            for stream, tokens in enumerate(self.first_max_tokens)
        )
        return bodies, first

    def prompt_tokens(self) -> dict[str, float]:
        lengths = [len(prompt.ids) for prompt in self.prompts]
        return {
            "min": min(lengths),
            "mean": round(statistics.mean(lengths), 1),
            "max": max(lengths),
        }


def make_workload(
    model_dir: Path, count: int, prompt_len: int, max_tokens: int, streams: int, seed: int
) -> Workload:
    """`count` distinct prompts of `prompt_len` tokens, first lengths for `streams` streams."""
    rng = random.Random(seed)
    prompts = make_prompts(model_dir, count, prompt_len, rng)
    first = tuple(rng.randint(1, max_tokens) for _ in range(streams))
    return Workload(tuple(prompts), max_tokens, first)


def make_prompts(model_dir: Path, count: int, prompt_len: int, rng: random.Random) -> list[Prompt]:
    """`count` user messages whose templated prompt is `prompt_len` tokens (or close)."""
    from gateway.serving.prompts import PromptRenderer

    renderer = PromptRenderer(model_dir)
    try:

        def render(words: list[str]) -> list[int]:
            return renderer.render_sync([{"role": "user", "content": " ".join(words)}])

        overhead = len(render(["the"])) - 1  # the template's own tokens
        prompts = []
        for _ in range(count):
            words = [rng.choice(WORDS) for _ in range(max(1, prompt_len - overhead))]
            ids = render(words)
            for _ in range(8):  # the words are one token each: converges in a step or two
                if len(ids) == prompt_len:
                    break
                if len(ids) < prompt_len:
                    words.append(rng.choice(WORDS))
                elif len(words) > 1:
                    words.pop()
                ids = render(words)
            prompts.append(Prompt(" ".join(words), ids))
        return prompts
    finally:
        renderer.close()
