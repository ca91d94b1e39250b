"""`POST /v1/completions`: text completion of raw prompts, no chat template.

`prompt` may be a string, token ids, or a list of either: each prompt gets `n`
choices. Prompts are encoded without special tokens, as given (vLLM adds BOS;
for a raw-completion API the caller's text is the whole prompt).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass

import orjson

from gateway.errors import InvalidRequest
from gateway.openai.bodies import completion_choice
from gateway.openai.chunks import CompletionChunks
from gateway.openai.logprobs import LogprobFormatter
from gateway.openai.protocol import CompletionRequest
from gateway.serving.runs import ChoiceFactory, Run, Runner, Streamed, Whole
from gateway.serving.sampling import response_constraint
from gateway.text.stops import StopMatcher
from gateway.text.streaming import ChoiceStream


@dataclass(frozen=True, slots=True)
class Completions:
    runner: Runner

    async def create(self, body: CompletionRequest, request_id: str) -> Streamed | Whole:
        runner = self.runner
        run, prompts = await self.start(body, request_id)
        formatter = None
        if body.logprobs is not None:
            formatter = LogprobFormatter(runner.prompts.token_text)
        chunks = CompletionChunks(
            f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.model, logprobs=formatter
        )
        echoes = [runner.prompts.decode(ids) if body.echo else "" for ids in prompts]
        if body.stream:
            prelude = []
            if body.echo:
                prelude = [
                    chunks.text(g.choice, echoes[g.choice.index // body.n]) for g in run.generations
                ]
            return Streamed(run, chunks, prelude, body.include_usage, body.continuous_usage)
        return Whole(run, functools.partial(_body, run, chunks, body, formatter, echoes))

    async def start(self, body: CompletionRequest, request_id: str) -> tuple[Run, list[list[int]]]:
        """Every check, the prompts encoded, admitted: the running choices, not yet framed,
        and each prompt's ids."""
        arrival = time.perf_counter()
        runner = self.runner
        runner.check(body)
        body.reject_unsupported()
        prompts = await self._encode(body)
        constraint = response_constraint(body.response_format)
        run = runner.start(body, request_id, prompts, constraint, self._choices(body), arrival)
        return run, prompts

    async def _encode(self, body: CompletionRequest) -> list[list[int]]:
        settings, prompts = self.runner.settings, self.runner.prompts
        given = body.prompts()
        if len(given) > settings.max_prompts:
            raise InvalidRequest(
                f"at most {settings.max_prompts} prompts are allowed", param="prompt"
            )
        texts = [p for p in given if isinstance(p, str)]
        if sum(map(len, texts)) > settings.max_prompt_chars:
            raise InvalidRequest(
                f"the prompts exceed {settings.max_prompt_chars} characters", param="prompt"
            )
        encoded = iter(await asyncio.gather(*(prompts.encode(text) for text in texts)))
        ids = [next(encoded) if isinstance(p, str) else p for p in given]
        for prompt in ids:
            if not prompt:
                raise InvalidRequest("a prompt must not be empty", param="prompt")
            if max(prompt) >= prompts.vocab_size:
                raise InvalidRequest(
                    "the prompt has token ids outside the vocabulary "
                    f"(0..{prompts.vocab_size - 1})",
                    param="prompt",
                )
        return ids

    def _choices(self, body: CompletionRequest) -> ChoiceFactory:
        prompts, stops = self.runner.prompts, body.stop_strings

        def choice(index: int, prompt_ids: list[int]) -> ChoiceStream:
            return ChoiceStream(
                index,
                prompts.detokenizer(prompt_ids),
                StopMatcher(stops, include=body.include_stop_str_in_output) if stops else None,
            )

        return choice


async def _body(
    run: Run,
    chunks: CompletionChunks,
    body: CompletionRequest,
    formatter: LogprobFormatter | None,
    echoes: list[str],
) -> bytes:
    outputs = await run.collect()
    response = {
        "id": chunks.completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            completion_choice(out, echo=echoes[out.choice.index // body.n], logprobs=formatter)
            for out in outputs
        ],
        "usage": run.usage().body(),
    }
    return orjson.dumps(response)
