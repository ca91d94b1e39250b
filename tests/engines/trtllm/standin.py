"""A stand-in for the part of `tensorrt_llm` 1.x that engines/trtllm/engine.py uses.

`installed()` puts it in `sys.modules` as `tensorrt_llm` (with `llmapi`, `llmapi.llm_args`
and, as releases up to 1.2 have, `_tensorrt_engine`) and takes it out again:

    with installed(StandinConfig(step_seconds=0.001)) as standin:
        engine = TrtllmEngine(model_dir, TrtllmSettings())
        await engine.start()
        ...
        standin.llm.requests[0].abort_steps

What it reproduces, as read in tensorrt_llm's llmapi/llm.py, executor/result.py,
executor/executor.py and batch_manager/llmRequest.cpp:

* `LLM(...)` rejects any keyword its args model lacks. With `skip_tokenizer_init`, a
  request without `end_id` is refused. `SamplingParams.max_tokens` defaults to 32.
* `generate_async` returns at once; iterating its result awaits one executor response
  per step and yields the same object, mutated: `token_ids` grows, `token_ids_diff` is
  the step's new ids.
* The executor clamps output to max_seq_len silently; a prompt over max_input_len fails
  on the first await (a `RequestError`, as with the worker process).
* A stop id finishes as 'stop' and is cut from the output, but not from the logprobs.
  The end id finishes as 'stop' too and is left out of the output, as we believe the
  C++ decoder does (not read in source); `include_end_id` keeps it, to cover the other
  case. `ignore_eos` makes the end id -1; `min_tokens` holds the end id back only: any
  other stop id drawn before it still ends the output (`_apply_min_length_penalty`,
  `penaltyKernels.cu`).
* `embedding_bias` must be a float32 [vocab_size] tensor (the C++ decoder's check); as
  a stand-in for sampling, an id biased by 100 or more is emitted.
* Guided decoding needs `guided_decoding_backend` on the LLM, which needs a tokenizer;
  a guided request to an LLM without one fails. Output is not constrained here.
* logprobs: see standin_sampling. The TensorRT backend refuses them unless the
  LLM gathers generation logits.
* `abort()` asks the executor to cancel; the request ends at its next step with
  finish_reason 'cancelled'.
* `get_stats_async` yields nothing before the first request; then one shared queue of
  per-step JSON records that stops after `timeout` idle seconds until a request re-arms it.

What differs per release (the flags of `StandinConfig`; tests/engines/trtllm/
test_releases.py has a preset per release), on the PyTorch backend's sampler only, the
C++ decoder of prebuilt engines doing all of it:

* penalties ignored (`sampler_penalties`; applied, a token already generated is not
  repeated), a request's seed ignored for the executor's one generator (`sampler_seed`),
  min_tokens ignored or counted over prompt plus output (`sampler_min_tokens`).
* The executor lowers max_seq_len to the KV cache's `kv_blocks x tokens_per_block`.
* `kill_worker()`: 1.x notes the dead worker in the proxy's `_error_queue` and its MPI
  future, and raises at the next submission; with `check_health`, `_check_health()` is
  false. With `errors_on_result` a failed request ends with `.error` set, unraised.

Runs on the event loop with real sleeps between steps. Output ids are deterministic:
position i echoes the prompt as `token_base + prompt[i % len(prompt)] % token_span`; with
`eos_after=n` position n is the end id, and `drawn` puts given ids at given positions (the
end id only where min_tokens lets it through). The vocabulary size is the checkpoint's (or
the engine's) `vocab_size`, `token_base + token_span` if it has none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import json
import queue
import random
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar, Literal

import torch

from tests.engines.trtllm.standin_sampling import (
    GuidedDecodingParams,
    Logprob,
    Vocab,
    sampling_params_cls,
    token_logprobs,
)


class MinTokens(enum.Enum):
    IGNORED = enum.auto()  # before NVIDIA/TensorRT-LLM#7808
    WHOLE_SEQUENCE = enum.auto()  # prompt plus output, before #12166
    OUTPUT = enum.auto()


@dataclass(frozen=True)
class StandinConfig:
    # The defaults have every feature: a release that never was, with the engine backend
    # and a PyTorch sampler that does everything. Real releases are presets in tests.
    version: str = "1.4.0rc1"
    engine_backend: bool = True  # ships tensorrt_llm._tensorrt_engine (1.2 and older)
    missing_fields: frozenset[str] = frozenset()  # LLM keywords this "release" lacks
    missing_sampling: frozenset[str] = frozenset()  # SamplingParams fields it lacks
    step_seconds: float = 0.002
    token_base: int = 1000
    token_span: int = 1000
    eos_after: int | None = None
    drawn: Mapping[int, int] = field(default_factory=dict)  # output position -> the id drawn
    include_end_id: bool = False  # the PyTorch sampler's way: the end id stays in output
    reject_token: int | None = None  # the executor fails prompts holding this id
    tokens_per_block: int = 4
    kv_blocks: int = 4096
    sampler_penalties: bool = True
    sampler_seed: bool = True
    sampler_min_tokens: MinTokens = MinTokens.OUTPUT
    check_health: bool = False  # LLM._check_health(), newest releases
    errors_on_result: bool = False  # NVIDIA/TensorRT-LLM#13119
    generation_configs: tuple[str, ...] = ("auto", "trtllm")  # what generation_config takes


class RequestError(RuntimeError):
    """A per-request failure (tensorrt_llm.executor.utils.RequestError)."""


_BASE_FIELDS = frozenset(
    {
        "model", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code",
        "tensor_parallel_size", "dtype", "revision", "tokenizer_revision",
        "pipeline_parallel_size", "context_parallel_size", "kv_cache_config",
        "enable_chunked_prefill", "iter_stats_max_iterations", "scheduler_config",
        "max_batch_size", "max_input_len", "max_seq_len", "max_beam_width", "max_num_tokens",
        "return_perf_metrics", "backend", "guided_decoding_backend", "gather_generation_logits",
    }
)  # fmt: skip
_TORCH_FIELDS = _BASE_FIELDS | {
    "enable_iter_perf_stats",
    "enable_iter_req_stats",
    "stream_interval",
    "generation_config",  # newest releases only
}
_TRT_FIELDS = _BASE_FIELDS | {"build_config", "workspace", "batching_type", "normalize_log_probs"}


@dataclass(kw_only=True)
class KvCacheConfig:
    enable_block_reuse: bool = True
    max_tokens: int | None = None
    free_gpu_memory_fraction: float | None = None


@dataclass(kw_only=True)
class BuildConfig:
    max_input_len: int = 1024
    max_seq_len: int | None = None
    max_batch_size: int = 2048
    max_num_tokens: int = 8192


@dataclass
class LlmArgs:
    build_config: BuildConfig
    max_seq_len: int | None
    max_batch_size: int | None
    max_num_tokens: int | None
    enable_chunked_prefill: bool
    kv_cache_config: KvCacheConfig


@dataclass
class CompletionOutput:
    index: int
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    logprobs: list[dict[int, Logprob] | float] = field(default_factory=list)
    _last_token_ids_len: int = 0
    _last_logprobs_len: int = 0

    @property
    def token_ids_diff(self) -> list[int]:
        return self.token_ids[self._last_token_ids_len :]

    @property
    def logprobs_diff(self) -> list[dict[int, Logprob] | float]:
        return self.logprobs[self._last_logprobs_len :]


@dataclass
class _Response:
    """One executor response: the step's new ids, and how it ended if it did."""

    new_tokens: list[int]
    new_logprobs: list[dict[int, Logprob] | float]
    finish: str | None = None  # end_id, stop_words, length or cancelled
    error: str | None = None
    cached_tokens: int = 0


class RequestOutput:
    def __init__(self, request_id: int, prompt: list[int], params: Any) -> None:
        asyncio.get_running_loop()  # the real one needs a loop here for async iteration
        self.request_id = request_id
        self.prompt_token_ids = prompt
        self.sampling_params = params
        self.outputs = [CompletionOutput(0)]
        self.cached_tokens = 0
        self.error: str | None = None
        self.abort_steps: list[int] = []  # the executor step at each abort() call
        self._done = False
        self._responses: asyncio.Queue[_Response] = asyncio.Queue()
        self._executor: _Executor | None = None

    @property
    def finished(self) -> bool:
        return self._done

    def abort(self) -> None:
        assert self._executor is not None
        self.abort_steps.append(self._executor.steps)
        self._executor.cancel(self)

    def __aiter__(self) -> RequestOutput:
        return self

    async def __anext__(self) -> RequestOutput:
        if self._done:
            raise StopAsyncIteration
        self._handle(await self._responses.get())
        return self

    def _handle(self, response: _Response) -> None:
        if response.error is not None:
            assert self._executor is not None
            if not self._executor.config.errors_on_result:
                raise RequestError(response.error)
            self.error, self._done = response.error, True
            return
        output = self.outputs[0]
        output._last_token_ids_len = len(output.token_ids)
        output.token_ids.extend(response.new_tokens)
        output._last_logprobs_len = len(output.logprobs)
        output.logprobs += response.new_logprobs
        self.cached_tokens = response.cached_tokens
        if response.finish is None:
            return
        self._done = True
        output.finish_reason = {"length": "length", "cancelled": "cancelled"}.get(
            response.finish, "stop"
        )
        if response.finish == "stop_words":
            output.stop_reason = output.token_ids[-1]
            if not self.sampling_params.include_stop_str_in_output:
                output.token_ids = output.token_ids[:-1]


class IterationResult:
    """The executor's single stats queue (executor/result.py `IterationResult`)."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._done = False
        self._timeout = 2.0
        self._records: deque[str] = deque(maxlen=maxlen)  # the oldest drop out when full
        self._arrived = asyncio.Event()
        self.readers = 0
        self.max_readers = 0

    def set_timeout(self, timeout: float) -> None:
        self._timeout = timeout

    def mark_undone(self) -> None:
        self._done = False

    def put(self, record: str) -> None:
        self._records.append(record)
        self._arrived.set()

    def __aiter__(self) -> IterationResult:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        self.readers += 1
        self.max_readers = max(self.max_readers, self.readers)
        try:
            await asyncio.wait_for(self._next_record(), self._timeout)
        except TimeoutError:
            self._done = True
            raise StopAsyncIteration from None
        finally:
            self.readers -= 1
        return dict(json.loads(self._records.popleft()))

    async def _next_record(self) -> None:
        while not self._records:
            self._arrived.clear()
            await self._arrived.wait()


@dataclass(eq=False)
class _Sequence:
    output: RequestOutput
    streaming: bool
    max_new: int = 0
    generated: int = 0
    cached_tokens: int = 0
    pending: list[int] = field(default_factory=list)
    pending_logprobs: list[dict[int, Logprob] | float] = field(default_factory=list)
    cancelled: bool = False
    seen: set[int] = field(default_factory=set)  # generated ids, for penalties
    rng: random.Random | None = None  # its seed's generator, where the sampler has one

    @property
    def prompt(self) -> list[int]:
        return self.output.prompt_token_ids


class _Executor:
    """In-flight batching: each step admits waiting requests and gives each one token."""

    def __init__(self, llm: _BaseLLM, max_seq_len: int, max_input_len: int) -> None:
        self.llm, self.config = llm, llm.standin.config
        self.max_seq_len, self.max_input_len = max_seq_len, max_input_len
        self.waiting: deque[_Sequence] = deque()
        self.running: list[_Sequence] = []
        self.stats: IterationResult | None = None
        self.steps = 0
        self.reused_blocks = self.missed_blocks = 0
        self.cached_prefixes: set[tuple[int, ...]] = set()
        self.task: asyncio.Task[None] | None = None
        self.gate = asyncio.Event()  # clear it to hold the executor between steps
        self.gate.set()
        self.rng = random.Random(0)  # TorchSampler's one generator, without per-request seeds

    def submit(self, sequence: _Sequence) -> None:
        sequence.output._executor = self
        self.waiting.append(sequence)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def cancel(self, output: RequestOutput) -> None:
        for sequence in [*self.waiting, *self.running]:
            if sequence.output is output:
                sequence.cancelled = True

    async def _run(self) -> None:
        while self.waiting or self.running:
            await asyncio.sleep(self.config.step_seconds)
            await self.gate.wait()
            self._step()

    def _step(self) -> None:
        self.steps += 1
        for sequence in [s for s in self.waiting if s.cancelled]:
            self.waiting.remove(sequence)
            self._respond(sequence, "cancelled")
        while self.waiting and len(self.running) < self.llm.max_batch_size:
            self._admit(self.waiting.popleft())
        active = len(self.running)  # counted as the step starts, finishing ones included
        for sequence in list(self.running):
            if sequence.cancelled:
                self._respond(sequence, "cancelled")
            else:
                self._advance(sequence)
        self._record_stats(active)

    def _admit(self, sequence: _Sequence) -> None:
        message = self._refusal(sequence)
        if message is not None:
            sequence.output._responses.put_nowait(_Response([], [], error=message))
            return
        prompt = sequence.prompt
        # The silent clamp of batch_manager/llmRequest.cpp `validate`.
        sequence.max_new = min(
            sequence.output.sampling_params.max_tokens, self.max_seq_len - len(prompt)
        )
        sequence.cached_tokens = self._reuse(prompt) * self.config.tokens_per_block
        seed = sequence.output.sampling_params.seed
        sequence.rng = None if seed is None else random.Random(seed)
        self.running.append(sequence)

    def _refusal(self, sequence: _Sequence) -> str | None:
        prompt, params = sequence.prompt, sequence.output.sampling_params
        if self.config.reject_token in prompt:
            return "injected request failure"
        if len(prompt) > self.max_input_len:
            return f"Prompt length ({len(prompt)}) exceeds maximum input length"
        bias, vocab_size = params.embedding_bias, self.llm.vocab_size
        if bias is not None and (bias.dtype != torch.float32 or bias.shape != (vocab_size,)):
            return (
                "The embedding bias shape is not as expected. Expected last dimension "
                f"to be same as vocab size: {vocab_size}."
            )
        if params.guided_decoding is not None and not self.llm.kwargs.get(
            "guided_decoding_backend"
        ):
            return "Guided decoding is not enabled"  # the wording is the stand-in's own
        return None

    def _reuse(self, prompt: list[int]) -> int:
        """Leading whole prompt blocks found in the cache; caches the prompt's blocks."""
        per_block = self.config.tokens_per_block
        prefixes = [tuple(prompt[:end]) for end in range(per_block, len(prompt) + 1, per_block)]
        reused = 0
        if self.llm.args.kv_cache_config.enable_block_reuse:
            while reused < len(prefixes) and prefixes[reused] in self.cached_prefixes:
                reused += 1
            self.cached_prefixes.update(prefixes)
        self.reused_blocks += reused
        self.missed_blocks += len(prefixes) - reused
        return reused

    def _advance(self, sequence: _Sequence) -> None:
        params = sequence.output.sampling_params
        token = self._next_token(sequence)
        trt = isinstance(self.llm, _TrtLLM)
        entry = token_logprobs(self.llm.vocab, params, token, sequence.generated, trt_backend=trt)
        sequence.generated += 1
        sequence.pending.append(token)
        if entry is not None:
            sequence.pending_logprobs.append(entry)
        if token == _end_id(params):
            if not self.config.include_end_id:
                sequence.pending.pop()
                if entry is not None:
                    sequence.pending_logprobs.pop()
            self._respond(sequence, "end_id")
        elif token in (params.stop_token_ids or ()):
            self._respond(sequence, "stop_words")
        elif sequence.generated >= sequence.max_new:
            self._respond(sequence, "length")
        elif sequence.streaming:
            self._respond(sequence, None)

    def _next_token(self, sequence: _Sequence) -> int:
        params = sequence.output.sampling_params
        bias = params.embedding_bias
        if bias is not None and bias.max() >= 100:
            return int(bias.argmax())
        if sequence.generated == self._eos_at(sequence) and _end_id(params) >= 0:
            return _end_id(params)
        drawn = self.config.drawn.get(sequence.generated)
        held = drawn == _end_id(params) and sequence.generated < self._min_tokens(sequence)
        if drawn is not None and not held:
            return drawn
        token = self._sampled(sequence)
        sequence.seen.add(token)
        return token

    @property
    def _cpp_decoder(self) -> bool:
        return isinstance(self.llm, _TrtLLM)

    def _eos_at(self, sequence: _Sequence) -> int | None:
        if self.config.eos_after is None:
            return None
        return max(self.config.eos_after, self._min_tokens(sequence))

    def _min_tokens(self, sequence: _Sequence) -> int:
        """min_tokens bans the end id, and no other, until that many tokens are out, as the
        sampler counts."""
        min_tokens = sequence.output.sampling_params.min_tokens or 0
        mode = MinTokens.OUTPUT if self._cpp_decoder else self.config.sampler_min_tokens
        if mode is MinTokens.IGNORED:
            return 0
        if mode is MinTokens.WHOLE_SEQUENCE:
            return min_tokens - len(sequence.prompt)
        return min_tokens

    def _sampled(self, sequence: _Sequence) -> int:
        """A seeded draw where a seed is given, else the prompt echoed."""
        params, base, span = (
            sequence.output.sampling_params,
            self.config.token_base,
            self.config.token_span,
        )
        if params.seed is not None and params.top_k != 1:
            honoured = self._cpp_decoder or self.config.sampler_seed
            rng = sequence.rng if honoured and sequence.rng is not None else self.rng
            return base + rng.randrange(span)
        prompt = sequence.prompt
        token = base + prompt[sequence.generated % len(prompt)] % span
        if (self._cpp_decoder or self.config.sampler_penalties) and _penalized(params):
            while token in sequence.seen and len(sequence.seen) < span:
                token = base + (token - base + 1) % span
        return token

    def _respond(self, sequence: _Sequence, finish: str | None) -> None:
        tokens, sequence.pending = sequence.pending, []
        logprobs, sequence.pending_logprobs = sequence.pending_logprobs, []
        response = _Response(tokens, logprobs, finish, cached_tokens=sequence.cached_tokens)
        sequence.output._responses.put_nowait(response)
        if finish is not None and sequence in self.running:
            self.running.remove(sequence)

    def _record_stats(self, active: int) -> None:
        if self.stats is None or not self.llm.collects_stats:
            return
        per_block = self.config.tokens_per_block
        used = sum(-(-(len(s.prompt) + s.generated) // per_block) for s in self.running)
        lookups = self.reused_blocks + self.missed_blocks
        kv = {
            "maxNumBlocks": self.config.kv_blocks,
            "freeNumBlocks": self.config.kv_blocks - used,
            "usedNumBlocks": used,
            "tokensPerBlock": per_block,
            "reusedBlocks": self.reused_blocks,
            "missedBlocks": self.missed_blocks,
            "cacheHitRate": self.reused_blocks / lookups if lookups else 0.0,
        }
        record = {
            "iter": self.steps,
            "iterLatencyMS": self.config.step_seconds * 1000,
            "numActiveRequests": active,
            "numQueuedRequests": len(self.waiting),
            "maxBatchSizeRuntime": self.llm.max_batch_size,
            "kvCacheStats": kv,
        }
        self.stats.put(json.dumps(record))


def _penalized(params: Any) -> bool:
    repetition = getattr(params, "repetition_penalty", None)
    others = (getattr(params, name, None) for name in ("presence_penalty", "frequency_penalty"))
    return repetition not in (None, 1.0) or any(others)


class _WorkerProxy:
    """executor/proxy.py's GenerationExecutorProxy, as far as a dead worker shows (1.x)."""

    def __init__(self) -> None:
        self.mpi_futures: list[concurrent.futures.Future[None]] = [concurrent.futures.Future()]
        self._error_queue: queue.Queue[BaseException] = queue.Queue()


def _end_id(params: Any) -> int:
    """What the worker sends the executor: -1 for ignore_eos (base_worker.py)."""
    return -1 if params.ignore_eos or params.end_id is None else int(params.end_id)


async def _no_stats() -> AsyncIterator[dict[str, Any]]:
    return
    yield  # an async generator that ends at once, like executor.py's empty_async_iterable


class _BaseLLM:
    standin: ClassVar[Standin]
    args_fields: ClassVar[frozenset[str]]

    def __init__(self, model: str | Path, *, skip_tokenizer_init: bool = False, **kwargs: Any):
        for key in kwargs:
            if key not in self.args_fields:
                raise ValueError(f"{type(self).__name__} got invalid argument: {key}")
        if kwargs.get("guided_decoding_backend") and skip_tokenizer_init:
            # xgrammar's tokenizer info is built from the LLM's tokenizer, None here.
            raise AssertionError("guided decoding needs the tokenizer")
        if kwargs.get("generation_config", "auto") not in self.standin.config.generation_configs:
            raise ValueError(f"invalid generation_config: {kwargs['generation_config']}")
        self.kwargs = dict(kwargs, skip_tokenizer_init=skip_tokenizer_init)
        self.model = Path(model)
        self.tokenizer: object | None = None if skip_tokenizer_init else object()
        self.requests: list[RequestOutput] = []
        self.shutdown_calls = 0
        self.stats_calls = 0
        self._executor = _WorkerProxy()
        self.args = self._args(kwargs)
        self.executor = _Executor(self, *self._executor_lengths())
        config = self.standin.config
        self.vocab = Vocab(config.token_base, config.token_span)
        self.vocab_size = self._vocab_size() or config.token_base + config.token_span
        self.standin.llms.append(self)

    @property
    def max_batch_size(self) -> int:
        runtime, built = self.args.max_batch_size, self.args.build_config.max_batch_size
        return built if runtime is None else min(runtime, built)

    @property
    def collects_stats(self) -> bool:
        return True  # the TensorRT backend always does

    def _args(self, kwargs: dict[str, Any]) -> LlmArgs:
        raise NotImplementedError

    def _executor_lengths(self) -> tuple[int, int]:
        raise NotImplementedError

    def _vocab_size(self) -> int | None:
        raise NotImplementedError

    def _check_arguments(self, prompt_len: int, params: Any) -> None:
        raise NotImplementedError

    def kill_worker(self) -> None:
        """The executor's worker process dies: running requests get no more responses."""
        error = RuntimeError("the MPI worker exited")
        self._executor.mpi_futures[0].set_exception(error)
        self._executor._error_queue.put_nowait(error)
        if self.executor.task is not None:
            self.executor.task.cancel()

    def _worker_alive(self) -> bool:  # `_check_health` on releases that have it
        return not self._executor.mpi_futures[0].done()

    def generate_async(
        self, inputs: Any, sampling_params: Any = None, streaming: bool = False
    ) -> RequestOutput:
        if self.shutdown_calls:
            raise RuntimeError("LLM is shutting down")
        if not self._executor._error_queue.empty():  # proxy.py `_handle_background_error`
            raise self._executor._error_queue.get_nowait()
        params = sampling_params or self.standin.sampling_params_cls()
        if params.end_id is None:
            if self.tokenizer is None:
                raise ValueError(
                    "tokenizer is required to reset end_id if it is None, or you can "
                    "explicitly specify the end_id for sampling_params"
                )
            params.end_id = 2
        prompt = list(inputs["prompt_token_ids"] if isinstance(inputs, dict) else inputs)
        self._check_arguments(len(prompt), params)
        output = RequestOutput(len(self.requests) + 1, prompt, params)
        self.requests.append(output)
        if self.executor.stats is None:
            self.executor.stats = IterationResult()
        self.executor.stats.mark_undone()  # more stats are coming
        self.executor.submit(_Sequence(output, streaming))
        return output

    def get_stats_async(self, timeout: float = 2) -> IterationResult | AsyncIterator[Any]:
        self.stats_calls += 1
        if self.executor.stats is None:
            return _no_stats()
        self.executor.stats.set_timeout(timeout)
        return self.executor.stats

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        task = self.executor.task
        if task is not None:  # the real one is called from any thread
            task.get_loop().call_soon_threadsafe(task.cancel)


class _TorchLLM(_BaseLLM):
    def _args(self, kwargs: dict[str, Any]) -> LlmArgs:
        return LlmArgs(
            build_config=BuildConfig(),
            max_seq_len=kwargs.get("max_seq_len"),  # None: deduced in the worker, not here
            max_batch_size=kwargs.get("max_batch_size", 2048),
            max_num_tokens=kwargs.get("max_num_tokens", 8192),
            enable_chunked_prefill=kwargs.get("enable_chunked_prefill", False),
            kv_cache_config=kwargs.get("kv_cache_config", KvCacheConfig()),
        )

    @property
    def collects_stats(self) -> bool:
        return bool(self.kwargs.get("enable_iter_perf_stats", False))

    def _executor_lengths(self) -> tuple[int, int]:
        max_seq_len = self.args.max_seq_len
        if max_seq_len is None:
            config = json.loads((self.model / "config.json").read_text())
            max_seq_len = int(config["max_position_embeddings"])
        # KvCacheCreator lowers it to what the cache holds, and llm.args never learns.
        capacity = self.standin.config.kv_blocks * self.standin.config.tokens_per_block
        max_seq_len = min(max_seq_len, capacity)
        return max_seq_len, max_seq_len - 1

    def _vocab_size(self) -> int | None:
        config = json.loads((self.model / "config.json").read_text())
        return int(config["vocab_size"]) if "vocab_size" in config else None

    def _check_arguments(self, prompt_len: int, params: Any) -> None:
        max_num_tokens = self.args.max_num_tokens
        if not self.args.enable_chunked_prefill and max_num_tokens and prompt_len > max_num_tokens:
            raise ValueError(f"prompt length {prompt_len} exceeds max_num_tokens {max_num_tokens}")


class _TrtLLM(_BaseLLM):
    def _args(self, kwargs: dict[str, Any]) -> LlmArgs:
        engine = json.loads((self.model / "config.json").read_text())
        return LlmArgs(
            build_config=BuildConfig(**engine["build_config"]),
            max_seq_len=None,  # an engine's is built in
            max_batch_size=kwargs.get("max_batch_size"),
            max_num_tokens=kwargs.get("max_num_tokens"),
            enable_chunked_prefill=kwargs.get("enable_chunked_prefill", False),
            kv_cache_config=kwargs.get("kv_cache_config", KvCacheConfig()),
        )

    def _executor_lengths(self) -> tuple[int, int]:
        build = self.args.build_config
        assert build.max_seq_len is not None
        return build.max_seq_len, build.max_input_len

    def _vocab_size(self) -> int | None:
        pretrained = json.loads((self.model / "config.json").read_text()).get("pretrained_config")
        return int(pretrained["vocab_size"]) if pretrained else None

    def _check_arguments(self, prompt_len: int, params: Any) -> None:
        if params.logprobs:
            # llm.py: the TensorRT backend computes logprobs from the generation logits.
            if not self.kwargs.get("gather_generation_logits"):
                raise ValueError(
                    f"`sampling_params.logprobs={params.logprobs}` requires "
                    "`gather_generation_logits=True` to be passed explicitly to the `LLM()` "
                    "constructor."
                )
            params.return_generation_logits = True
        max_seq_len = self.args.build_config.max_seq_len
        assert max_seq_len is not None
        if not self.args.enable_chunked_prefill and prompt_len + params.max_tokens > max_seq_len:
            raise ValueError(
                f"The sum of prompt length ({prompt_len}) and max_tokens "
                f"({params.max_tokens}) should not exceed max_seq_len ({max_seq_len})"
            )


@dataclass
class Standin:
    config: StandinConfig
    llms: list[_BaseLLM] = field(default_factory=list)
    sampling_params_cls: Any = None  # the release's SamplingParams

    @property
    def llm(self) -> _BaseLLM:
        return self.llms[-1]


_MODULE_NAMES = (
    "tensorrt_llm",
    "tensorrt_llm.llmapi",
    "tensorrt_llm.llmapi.llm_args",
    "tensorrt_llm._tensorrt_engine",
)


@contextlib.contextmanager
def installed(config: StandinConfig | None = None) -> Iterator[Standin]:
    """The stand-in as `tensorrt_llm` in `sys.modules`, for the duration of the block."""
    standin = Standin(config or StandinConfig())
    saved = {name: sys.modules.pop(name, None) for name in _MODULE_NAMES}
    sys.modules.update(_modules(standin))
    try:
        yield standin
    finally:
        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module


def _modules(standin: Standin) -> dict[str, ModuleType]:
    config = standin.config
    torch_fields = _TORCH_FIELDS - config.missing_fields
    trt_fields = _TRT_FIELDS - config.missing_fields
    health = {"_check_health": _BaseLLM._worker_alive} if config.check_health else {}
    torch_llm = type(
        "LLM", (_TorchLLM,), {"standin": standin, "args_fields": torch_fields, **health}
    )
    trt_llm = type("_TrtLLM", (_TrtLLM,), {"standin": standin, "args_fields": trt_fields, **health})
    standin.sampling_params_cls = sampling = sampling_params_cls(config.missing_sampling)
    modules = {
        "tensorrt_llm": _module(
            "tensorrt_llm", __version__=config.version, LLM=torch_llm, SamplingParams=sampling
        ),
        "tensorrt_llm.llmapi": _module(
            "tensorrt_llm.llmapi",
            LLM=torch_llm,
            SamplingParams=sampling,
            GuidedDecodingParams=GuidedDecodingParams,
            KvCacheConfig=KvCacheConfig,
            RequestError=RequestError,
            RequestOutput=RequestOutput,
            CompletionOutput=CompletionOutput,
        ),
        "tensorrt_llm.llmapi.llm_args": _module(
            "tensorrt_llm.llmapi.llm_args",
            TorchLlmArgs=_args_model(torch_fields, config.generation_configs),
            TrtLlmArgs=_args_model(trt_fields, config.generation_configs),
        ),
    }
    if config.engine_backend:
        modules["tensorrt_llm._tensorrt_engine"] = _module(
            "tensorrt_llm._tensorrt_engine", LLM=trt_llm
        )
    return modules


def _module(name: str, **attributes: Any) -> ModuleType:
    module = ModuleType(name)
    module.__path__ = []  # a package: a missing submodule is then ModuleNotFoundError
    module.__dict__.update(attributes)
    return module


def _args_model(fields: frozenset[str], generation_configs: tuple[str, ...]) -> type:
    """A pydantic args model as far as feature detection sees it: its fields' annotations."""
    annotations: dict[str, Any] = dict.fromkeys(fields, Any)
    if "generation_config" in fields:
        annotations["generation_config"] = Literal[generation_configs]
    model_fields = {name: SimpleNamespace(annotation=kind) for name, kind in annotations.items()}
    return type("LlmArgs", (), {"model_fields": model_fields})
