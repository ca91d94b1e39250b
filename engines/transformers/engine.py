"""transformers' continuous batching on the CPU: the embedded default engine.

It runs in a worker process of its own by default (`engines/worker/`), so that
its manager thread never shares an interpreter lock with the gateway's loop.

With `device: cuda` the same engine runs on one GPU. The model then loads
straight onto it, and transformers' continuous batching chooses its own
attention (flash attention where installed, else paged sdpa, which turns
CUDA graphs and async batching off); those choices stay transformers' defaults.

transformers' manager thread is the one owner of the model: it schedules, runs
one forward pass per step and hands each request's cumulative output to its
`OutputRouter`, which calls our handler on the event loop once per step for the
whole batch (`deliver_batch`). The handler diffs each request's tokens into its
sink (the gateway's request, or the engine worker's relay), with the logprobs our
sampler recorded on the manager thread (`engines/transformers/sampler.py`);
nothing else crosses threads but the sampler's per-request state and a few
counters read by `stats`.

Traps in transformers 5.23 this module works around:
- Left unset, the KV cache is sized from host RAM (about 9 GB); it is always
  bounded here by `num_blocks` x `block_size`.
- Its per-request sampling is slow, unseeded and all but closed to processors
  of our own: `engines/transformers/manager.py` says how ours gets in.
- A cancelled request gets no terminal output and its result handler leaks:
  `_abort` removes the handler itself, and drops the output of the step in
  flight, which then lands in a shared queue nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import (
    EngineError,
    EngineLimits,
    EngineRequestError,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    Sink,
)
from engines.settings import TransformersSettings
from engines.transformers.manager import (
    create_manager,
    drop_stray_outputs,
    kv_blocks_used,
    placement,
)
from engines.transformers.prefix import PrefixCounters, PrefixLookup
from engines.transformers.sampler import (
    RequestSampler,
    SamplerProcessor,
    compile_constraint,
    grammar_compiler,
)

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0
_SLOTS = 2**31  # sampler slots travel as int32


@dataclass(slots=True)
class _Live:
    """One request between submission and its last event."""

    sink: Sink
    stop_ids: frozenset[int]
    prompt_tokens: int
    slot: int
    sampler: RequestSampler
    sent: int = 0  # generated tokens handed to the sink (or dropped: the stop id)
    prefix: PrefixLookup = field(default_factory=PrefixLookup)


class TransformersEngine:
    def __init__(self, model_dir: Path, settings: TransformersSettings) -> None:
        self._model_dir = model_dir
        self._settings = settings
        self._manager: Any = None  # transformers' ContinuousBatchingManager
        self._cache: Any = None  # its PagedAttentionCache
        self._scheduler: Any = None
        self._limits: EngineLimits | None = None
        self._vocab_size = 0
        self._sampler = SamplerProcessor()
        self._grammars: Any = None  # xgrammar's GrammarCompiler
        self._live: dict[str, _Live] = {}
        self._ids = itertools.count()
        self._slots = itertools.count()
        self._prefix = PrefixCounters(settings.block_size)
        self._closed = False

    @property
    def name(self) -> str:
        return "transformers"

    async def start(self) -> None:
        manager = await asyncio.to_thread(self._start_manager)
        processor = manager.batch_processor  # created by the manager thread for the warm-up
        self._cache, self._scheduler = processor.cache, processor.scheduler
        self._vocab_size = int(manager.model.config.vocab_size)
        self._limits = self._compute_limits(manager)
        # After the warm-up: stats start at zero.
        self._prefix.install(self._cache, self._prefix_lookup)
        self._manager = manager
        watcher = threading.Thread(
            target=self._watch_manager_thread,
            args=(manager._generation_thread, asyncio.get_running_loop()),
            name="transformers-cb-watcher",
            daemon=True,
        )
        watcher.start()
        logger.info("transformers engine ready: %s", self._limits)

    def _start_manager(self) -> Any:
        """Load the model, start the manager and warm it up; off the event loop (seconds)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        settings = self._settings
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        model = AutoModelForCausalLM.from_pretrained(
            self._model_dir,
            dtype=getattr(torch, settings.dtype),
            use_kernels=settings.hub_kernels,
            **placement(settings),
        )
        vocab_size = int(model.config.vocab_size)
        self._grammars = grammar_compiler(
            AutoTokenizer.from_pretrained(self._model_dir), vocab_size
        )
        manager = create_manager(model, settings, self._sampler)
        manager.start()
        # The first forward passes set kernels up (about a second on 2 cores):
        # pay that here rather than in the first request's time to first token.
        # Without a sampler slot, its rows are greedy.
        manager.add_request(list(range(1, 17)), request_id="warm-up", max_new_tokens=2)
        result = manager.get_result("warm-up", timeout=_STOP_TIMEOUT_S)
        if result is None or result.error is not None:
            manager.stop(block=True, timeout=_STOP_TIMEOUT_S, hard_stop=True)
            reason = "no answer" if result is None else result.error
            raise EngineError(f"the transformers engine failed its warm-up: {reason}")
        return manager

    def _compute_limits(self, manager: Any) -> EngineLimits:
        capacity = int(self._cache.num_blocks) * self._settings.block_size
        max_seq_len = min(
            int(manager.model.config.max_position_embeddings),
            self._settings.max_seq_len or capacity,
            capacity,
        )
        return EngineLimits(
            max_seq_len=max_seq_len,
            max_input_len=max_seq_len - 1,
            max_batch_size=self._settings.max_batch_size,
            max_num_tokens=int(self._cache.max_batch_tokens),
        )

    def _prefix_lookup(self, request_id: str) -> PrefixLookup | None:
        live = self._live.get(request_id)
        return None if live is None else live.prefix

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        manager, self._manager = self._manager, None
        self._cache = self._scheduler = None  # lets the cache tensor go with the manager
        for request_id in list(self._live):
            self._end(request_id, FinishReason.ABORT)
        if manager is not None:
            # A hard stop drops what is running after the current step.
            await asyncio.to_thread(
                manager.stop, block=True, timeout=_STOP_TIMEOUT_S, hard_stop=True
            )
        logger.info("transformers engine closed")

    def healthy(self) -> bool:
        manager = self._manager
        return (
            manager is not None
            and manager.is_running()
            and manager.background_thread_status.fatal_error is None
        )

    def limits(self) -> EngineLimits:
        if self._limits is None:
            raise EngineError("the transformers engine is not started")
        return self._limits

    def stats(self) -> EngineStats:
        # Plain len() reads of structures the manager thread mutates: atomic under the GIL.
        manager, cache, scheduler = self._manager, self._cache, self._scheduler
        if manager is None or cache is None or scheduler is None:
            return EngineStats()
        return EngineStats(
            running=len(scheduler.active_requests),
            waiting=len(scheduler.waiting_requests) + manager.input_queue.qsize(),
            kv_blocks_total=int(cache.num_blocks),
            kv_blocks_used=kv_blocks_used(cache),
            prefix_cache_queries=self._prefix.queries,
            prefix_cache_hits=self._prefix.hits,
            reused_blocks=self._prefix.reused_blocks,
        )

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        max_new_tokens = self._checked_max_new_tokens(request)
        sampler = await self._request_sampler(request)
        request_id = self._submit(request, max_new_tokens, sampler, sink)
        return functools.partial(self._abort, request_id)

    async def _request_sampler(self, request: GenerationRequest) -> RequestSampler:
        constraint = request.sampling.constraint
        grammar = None
        if constraint is not None:  # compiling takes up to seconds: off the event loop
            grammar = await asyncio.to_thread(compile_constraint, self._grammars, constraint)
        return RequestSampler(request.sampling, request.prompt_token_ids, self._vocab_size, grammar)

    def _submit(
        self,
        request: GenerationRequest,
        max_new_tokens: int,
        sampler: RequestSampler,
        sink: Sink,
    ) -> str:
        manager = self._manager
        if manager is None or not self.healthy():
            raise EngineError("the transformers engine is not running")
        request_id = f"{request.request_id}#{next(self._ids)}"  # unique even if callers reuse ids
        sampling = request.sampling
        slot = next(self._slots) % _SLOTS
        live = _Live(sink, sampling.stop_token_ids, len(request.prompt_token_ids), slot, sampler)
        self._live[request_id] = live
        self._sampler.requests[slot] = sampler
        manager.register_result_handler(request_id, self._on_output)
        try:
            # An empty list is taken as is: no EOS stop (None would mean the default).
            added = manager.add_request(
                request.prompt_token_ids,
                request_id=request_id,
                max_new_tokens=max_new_tokens,
                streaming=True,
                eos_token_id=sorted(sampling.stop_token_ids),
                sampler_slot=slot,
            )
        except Exception as error:
            self._abort(request_id)
            raise EngineError(f"the transformers engine refused the request: {error}") from error
        if added is None:
            self._abort(request_id)
            raise EngineError("the transformers engine is not accepting requests")
        return request_id

    def _checked_max_new_tokens(self, request: GenerationRequest) -> int:
        limits = self.limits()
        prompt_len = len(request.prompt_token_ids)
        if prompt_len == 0:
            raise EngineRequestError("the prompt is empty")
        room = limits.output_room(prompt_len)
        # An id outside the embedding table would kill the manager thread.
        if min(request.prompt_token_ids) < 0 or max(request.prompt_token_ids) >= self._vocab_size:
            raise EngineRequestError(
                f"the prompt has token ids outside the vocabulary (0..{self._vocab_size - 1})"
            )
        if request.sampling.max_tokens < 1:
            raise EngineRequestError("max_tokens must be at least 1")
        # Past the context left, generation ends with LENGTH like max_tokens does.
        return min(request.sampling.max_tokens, room)

    def _on_output(self, output: Any) -> None:
        """One request's cumulative output after an engine step; runs on the event loop."""
        request_id = output.request_id
        live = self._live.get(request_id)
        if live is None:  # aborted meanwhile: its output was already on its way
            return
        finished = output.is_finished()
        error = output.error or live.sampler.error
        if error is not None:
            self._forget(request_id)
            live.sink.fail(EngineError(f"generation failed: {error}"))
            if not finished:
                self._cancel(request_id)
            return
        tokens: list[int] = output.generated_tokens
        end, completion, reason = _outcome(live, tokens, finished)
        self._send(live, tokens, end)
        if reason is not None:
            scheduled_at = output.lifespan[0]
            queued = scheduled_at - output.created_time if scheduled_at > 0 else 0.0
            self._end(request_id, reason, completion, max(0.0, queued))
            if not finished:  # ended by its grammar: the manager would go on
                self._cancel(request_id)
            drop_stray_outputs(self._manager)

    def _send(self, live: _Live, tokens: list[int], end: int) -> None:
        if end > live.sent:
            # The sampler recorded a logprob per token before the manager saw it.
            sampler = live.sampler
            logprobs = sampler.logprobs[live.sent : end] if sampler.logprobs_k is not None else ()
            live.sink.put(tokens[live.sent : end], logprobs)
            live.sent = end

    def _end(
        self,
        request_id: str,
        reason: FinishReason,
        completion: int | None = None,
        queued: float = 0.0,
    ) -> None:
        live = self._forget(request_id)
        if live is None:
            return
        live.sink.finish(
            Finished(
                reason=reason,
                prompt_tokens=live.prompt_tokens,
                completion_tokens=live.sent if completion is None else completion,
                cached_tokens=live.prefix.cached_tokens,
                queue_seconds=queued,
            )
        )

    def _forget(self, request_id: str) -> _Live | None:
        """Drop a request's state on our side, its sampler included."""
        live = self._live.pop(request_id, None)
        if live is not None:
            self._sampler.requests.pop(live.slot, None)
        return live

    def _abort(self, request_id: str) -> None:
        """Drop a request the engine has not finished; a no-op for a finished one."""
        if self._forget(request_id) is not None:
            self._cancel(request_id)

    def _cancel(self, request_id: str) -> None:
        manager = self._manager
        if manager is not None:
            manager.cancel_request(request_id)  # frees its KV blocks on the next step
            # transformers sends nothing more for a cancelled request, so the
            # handler it keeps until a terminal output would leak.
            manager.output_router.result_handlers.pop(request_id, None)
            drop_stray_outputs(manager)

    def _watch_manager_thread(
        self, thread: threading.Thread, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Fail every open request once the manager thread ends, however it ends."""
        thread.join()
        with contextlib.suppress(RuntimeError):  # the event loop is closed already
            loop.call_soon_threadsafe(self._on_manager_exit)

    def _on_manager_exit(self) -> None:
        if self._closed:
            return
        manager = self._manager
        fatal = manager.background_thread_status.fatal_error if manager is not None else None
        logger.error("transformers manager thread exited: %s", fatal)
        error = EngineError(f"the transformers engine stopped: {fatal or 'manager thread exited'}")
        for request_id in list(self._live):
            live = self._forget(request_id)
            if live is not None:
                live.sink.fail(error)


def _outcome(
    live: _Live, tokens: list[int], finished: bool
) -> tuple[int, int, FinishReason | None]:
    """How many tokens to send, how many were generated, and why it ends (None: it goes on)."""
    ended_at = live.sampler.ended_at
    if ended_at is not None and len(tokens) >= ended_at:
        # The grammar is complete and no stop id may end it: it ends here.
        return ended_at, ended_at, FinishReason.STOP
    if finished and tokens and tokens[-1] in live.stop_ids:
        return len(tokens) - 1, len(tokens), FinishReason.STOP  # the stop id is counted, not sent
    return len(tokens), len(tokens), FinishReason.LENGTH if finished else None
