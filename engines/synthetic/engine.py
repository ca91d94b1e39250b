"""A weightless engine with real batch semantics, for tests, load tests and benchmarks.

One step loop on the event loop plays the scheduler: each step admits waiting
requests up to `max_batch_size` (paying `prefill_seconds` once for the batch
that admitted any), sleeps `token_seconds`, then gives every running request
one token. Token ids are deterministic: they cycle through
`[first_token_id, first_token_id + token_id_count)` from an offset set by the
prompt length. Prefix reuse is modelled with hash-chained 64-token blocks, so
the prefix-cache statistics behave like a real paged cache.

Sampling fields, all deterministic:

* logit_bias: an id biased by +100 or more is emitted instead (the strongest bias
  first), one biased by -100 or less never is; smaller biases change nothing.
* min_tokens: until then a stop id that comes up is skipped, as a banned one is, for
  the next id up that is allowed.
* logprobs=k: each token gets logprob -0.25, and its top k are that token and the
  ids after it at -0.25, -1.25, -2.25, ...
* temperature, top-p, top-k, seed and the penalties are accepted and change nothing:
  the output is the same for every seed.
* constraints are refused: nothing here could make the output valid JSON.

Requests without logit_bias, min_tokens or logprobs take the plain path.

Injected faults (both off by default): every Nth request fails after its first
token, and the whole engine dies after N generated tokens.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engines.base import (
    EngineError,
    EngineLimits,
    EngineRequestError,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    Sink,
    TokenLogprob,
)
from engines.settings import SyntheticSettings

BLOCK_SIZE = 64
FORCING_BIAS = 100.0  # a logit bias this large either way decides the token


class _Shaping:
    """Where logit_bias or min_tokens change a request's tokens."""

    __slots__ = ("banned", "forced", "held", "min_tokens")

    def __init__(self, sampling: SamplingParams) -> None:
        ranked = sorted(sampling.logit_bias, key=lambda pair: (-pair[1], pair[0]))
        self.forced = tuple(token for token, bias in ranked if bias >= FORCING_BIAS)
        self.banned = frozenset(token for token, bias in ranked if bias <= -FORCING_BIAS)
        self.held = self.banned | sampling.stop_token_ids  # masked before min_tokens
        self.min_tokens = sampling.min_tokens

    @staticmethod
    def needed(sampling: SamplingParams) -> bool:
        return bool(sampling.logit_bias) or bool(sampling.min_tokens and sampling.stop_token_ids)

    def choose(self, token: int, generated: int) -> int:
        masked = self.held if generated < self.min_tokens else self.banned
        for forced in self.forced:
            if forced not in masked:
                return forced
        while token in masked:
            token += 1
        return token


@functools.lru_cache(maxsize=1 << 16)  # ids cycle, and TokenLogprob is immutable: share them
def _logprob(token: int, k: int) -> TokenLogprob:
    return TokenLogprob(-0.25, tuple((token + j, -0.25 - j) for j in range(k)))


@dataclass(slots=True)
class _Sequence:
    request: GenerationRequest
    sink: Sink
    shaping: _Shaping | None = field(init=False)
    submitted: float = field(default_factory=time.perf_counter)
    queue_seconds: float = 0.0
    cached_tokens: int = 0
    generated: int = 0
    fail: bool = False

    def __post_init__(self) -> None:
        sampling = self.request.sampling
        self.shaping = _Shaping(sampling) if _Shaping.needed(sampling) else None

    def finish(self, reason: FinishReason) -> None:
        self.sink.finish(
            Finished(
                reason,
                prompt_tokens=len(self.request.prompt_token_ids),
                completion_tokens=self.generated,
                cached_tokens=self.cached_tokens,
                queue_seconds=self.queue_seconds,
            )
        )


class SyntheticEngine:
    def __init__(self, settings: SyntheticSettings) -> None:
        self._settings = settings
        self._waiting: dict[str, _Sequence] = {}
        self._running: dict[str, _Sequence] = {}
        self._blocks: set[int] = set()  # hashes of prompt blocks seen: the "prefix cache"
        self._submitted = 0
        self._generated = 0
        self._prefix_queries = 0
        self._prefix_hits = 0
        self._step_seconds = 0.0
        self._fatal: EngineError | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return "synthetic"

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._step_loop(), name="synthetic-engine")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for sequence in [*self._waiting.values(), *self._running.values()]:
            sequence.finish(FinishReason.ABORT)
        self._waiting.clear()
        self._running.clear()

    def healthy(self) -> bool:
        task = self._loop_task
        return task is not None and not task.done() and self._fatal is None

    def limits(self) -> EngineLimits:
        max_seq_len = self._settings.max_seq_len
        return EngineLimits(max_seq_len, max_seq_len - 1, self._settings.max_batch_size)

    def stats(self) -> EngineStats:
        total = self._settings.max_batch_size * self._settings.max_seq_len // BLOCK_SIZE
        used = sum(
            -(-(len(s.request.prompt_token_ids) + s.generated) // BLOCK_SIZE)
            for s in self._running.values()
        )
        return EngineStats(
            running=len(self._running),
            waiting=len(self._waiting),
            kv_blocks_total=total,
            kv_blocks_used=used,
            prefix_cache_queries=self._prefix_queries,
            prefix_cache_hits=self._prefix_hits,
            step_seconds=self._step_seconds,
        )

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        if not self.healthy():
            raise EngineError(str(self._fatal or "the engine is not running"))
        if request.sampling.constraint is not None:
            raise EngineRequestError("the synthetic engine cannot enforce constraints")
        self.limits().output_room(len(request.prompt_token_ids))
        self._submitted += 1
        nth = self._settings.fail_every_nth_request
        sequence = _Sequence(request, sink, fail=bool(nth) and self._submitted % nth == 0)
        self._waiting[request.request_id] = sequence
        self._wake.set()
        return functools.partial(self._abandon, request.request_id)

    def _abandon(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)
        self._running.pop(request_id, None)

    async def _step_loop(self) -> None:
        settings = self._settings
        while self._fatal is None:
            if not self._waiting and not self._running:
                self._wake.clear()
                await self._wake.wait()
            began = time.perf_counter()
            if self._admit() and settings.prefill_seconds:
                await asyncio.sleep(settings.prefill_seconds)
            await asyncio.sleep(settings.token_seconds)
            self._step()
            self._step_seconds = time.perf_counter() - began

    def _admit(self) -> int:
        admitted = 0
        now = time.perf_counter()
        while self._waiting and len(self._running) < self._settings.max_batch_size:
            request_id, sequence = next(iter(self._waiting.items()))
            del self._waiting[request_id]
            sequence.queue_seconds = now - sequence.submitted
            sequence.cached_tokens = self._lookup_prefix(sequence.request.prompt_token_ids)
            self._running[request_id] = sequence
            admitted += 1
        return admitted

    def _lookup_prefix(self, prompt: list[int]) -> int:
        """Prompt tokens found in the block cache; registers the prompt's blocks."""
        parent, hits, matching = 0, 0, True
        for start in range(0, len(prompt) - BLOCK_SIZE + 1, BLOCK_SIZE):
            parent = hash((parent, *prompt[start : start + BLOCK_SIZE]))
            if matching and parent in self._blocks:
                hits += BLOCK_SIZE
            else:
                matching = False
                self._blocks.add(parent)
        self._prefix_queries += len(prompt)
        self._prefix_hits += hits
        return hits

    def _step(self) -> None:
        settings = self._settings
        for request_id, sequence in list(self._running.items()):
            request = sequence.request
            offset = (len(request.prompt_token_ids) + sequence.generated) % settings.token_id_count
            token = settings.first_token_id + offset
            if sequence.shaping is not None:
                token = sequence.shaping.choose(token, sequence.generated)
            sequence.generated += 1
            self._generated += 1
            sampling = request.sampling
            sink = sequence.sink
            if token in sampling.stop_token_ids:
                sequence.finish(FinishReason.STOP)
            else:
                if sampling.logprobs is None:
                    sink.put((token,))
                else:
                    sink.put((token,), (_logprob(token, sampling.logprobs),))
                if sequence.fail:
                    sink.fail(EngineError("injected request failure"))
                elif sequence.generated >= sampling.max_tokens:
                    sequence.finish(FinishReason.LENGTH)
            if sink.closed:
                del self._running[request_id]
        limit = settings.fail_engine_after_tokens
        if limit and self._generated >= limit:
            self._die(EngineError("injected engine failure"))

    def _die(self, error: EngineError) -> None:
        self._fatal = error
        for sequence in [*self._waiting.values(), *self._running.values()]:
            sequence.sink.fail(error)
        self._waiting.clear()
        self._running.clear()
