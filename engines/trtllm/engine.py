"""TensorRT-LLM's LLM API, held in-process and fed token ids by the gateway.

    engine = TrtllmEngine(Path("/models/llama-3.1-8b"), TrtllmSettings(max_seq_len=8192))
    await engine.start()

Each request gets one task that drains `generate_async(..., streaming=True)`. The library
yields the same `RequestOutput` every step, mutated in place, so the task copies each
step's new ids (`token_ids_diff`), and their logprobs if asked for, into the request's
sink. A consumer that leaves before `Finished` aborts the request at once; the
task still reads the final cancelled event. So does a stop id that the library was not
given (min_tokens with several stop ids, `sampling.Stops`): the task ends the output at it
itself. One more task reads iteration stats while
requests come in. engines/trtllm/sampling.py maps the contract's sampling onto the
library's, refusing what the installed release cannot do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from engines.settings import TrtllmSettings
from engines.trtllm.compat import (
    TrtllmApi,
    cached_tokens,
    fit_kv_cache,
    load_api,
    read_limits,
    refusals,
    worker_alive,
)
from engines.trtllm.releases import Feature
from engines.trtllm.sampling import Stops, Support, sampling_params, split_stops, token_logprobs

log = logging.getLogger(__name__)

# Anything else ('cancelled', 'timeout') means the engine gave up on the request.
_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


def stats_from(record: Mapping[str, Any]) -> EngineStats:
    """One `get_stats_async` record (the executor's camelCase JSON) as engine stats."""
    kv = record.get("kvCacheStats") or {}
    per_block = kv.get("tokensPerBlock", 0)
    reused, missed = kv.get("reusedBlocks", 0), kv.get("missedBlocks", 0)
    return EngineStats(
        running=record.get("numActiveRequests", 0),
        waiting=record.get("numQueuedRequests", 0),
        kv_blocks_total=kv.get("maxNumBlocks", 0),
        kv_blocks_used=kv.get("usedNumBlocks", 0),
        # The executor counts whole blocks only; tokens are estimated from them.
        prefix_cache_queries=(reused + missed) * per_block,
        prefix_cache_hits=reused * per_block,
        reused_blocks=reused,
        step_seconds=record.get("iterLatencyMS", 0.0) / 1000,
    )


@dataclass(eq=False, slots=True)
class _Live:
    """A request in the executor, from submission until its final result is read."""

    result: Any  # the library's RequestOutput
    prompt_tokens: int
    stops: Stops
    top_logprobs: int | None  # the request's logprobs k
    sink: Sink
    emitted: int = 0
    task: asyncio.Task[None] | None = None

    def step(self, output: Any) -> None:
        if self.sink.closed:  # ended here at a late stop id; the library's end follows
            return
        # Since NVIDIA/TensorRT-LLM#13119 a failed request ends with `.error` set, unraised.
        error = getattr(output, "error", None)
        if error:
            self.sink.fail(EngineRequestError(f"TensorRT-LLM refused the request: {error}"))
            return
        completion = output.outputs[0]
        ids = list(completion.token_ids_diff)  # a copy: the next step mutates the lists
        cut = self.stops.cut(ids, self.emitted)
        if cut is not None:
            # As the library ends on a stop id: the id counted, not yielded.
            self._put(ids[:cut], completion)
            self.finish(FinishReason.STOP, cached_tokens(output))
            if not output.finished:
                self.result.abort()  # free the batch slot and KV blocks now
            return
        if not output.finished:
            self._put(ids, completion)
            return
        reason = _REASONS.get(completion.finish_reason, FinishReason.ABORT)
        if reason is FinishReason.STOP and ids and ids[-1] in self.stops.library:
            ids.pop()  # the PyTorch sampler can keep the end id that the C++ decoder drops
        self._put(ids, completion)
        self.finish(reason, cached_tokens(output))

    def finish(self, reason: FinishReason, cached_tokens: int = 0) -> None:
        # The token that stopped generation is counted, though never yielded.
        completion_tokens = self.emitted + (reason is FinishReason.STOP)
        final = Finished(reason, self.prompt_tokens, completion_tokens, cached_tokens)
        self.sink.finish(final)

    def _put(self, ids: list[int], completion: Any) -> None:
        if not ids:
            return
        self.emitted += len(ids)
        if self.top_logprobs is None:
            self.sink.put(ids)
        else:
            # Paired from the front: a cut stop token leaves one logprob over at the end.
            self.sink.put(ids, token_logprobs(ids, completion.logprobs_diff, self.top_logprobs))


class TrtllmEngine:
    def __init__(self, model_dir: Path, settings: TrtllmSettings) -> None:
        self._model_dir = model_dir
        self._settings = settings
        self._api: TrtllmApi | None = None
        self._llm: Any = None
        self._limits: EngineLimits | None = None
        self._support = Support(None, {})
        self._failed = False
        self._live: set[_Live] = set()
        self._stats = EngineStats()
        self._stats_task: asyncio.Task[None] | None = None
        self._stats_rearmed = False
        self._stats_broken = False
        self._kv_checked = False  # the limits were checked against the KV cache's size

    @property
    def name(self) -> str:
        return "trtllm"

    async def start(self) -> None:
        self._choose_worker_process()
        # The import loads torch, MPI and CUDA libraries: seconds the event loop keeps.
        api = await asyncio.to_thread(load_api, on_engine=self._settings.engine_dir is not None)
        kwargs = api.llm_kwargs(self._llm_kwargs(api))
        model = self._settings.engine_dir or self._model_dir
        support = self._find_support(api, kwargs)
        try:
            # Loading takes minutes; the event loop keeps running meanwhile.
            llm = await asyncio.to_thread(api.llm_cls, str(model), **kwargs)
        except Exception as exc:
            raise EngineError(f"TensorRT-LLM could not load {model}: {exc}") from exc
        chunked = self._settings.enable_chunked_prefill
        self._limits = read_limits(llm, on_engine=api.on_engine, chunked_prefill=chunked)
        self._api, self._llm, self._support = api, llm, support
        log.info("TensorRT-LLM %s serving %s with %s", api.version, model, self._limits)
        for feature, why in support.refused.items():
            log.info("requests with %s are refused: %s", feature, why)

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        tasks = [live.task for live in self._live if live.task is not None]
        for live in list(self._live):
            live.result.abort()
            live.finish(FinishReason.ABORT)
        if self._stats_task is not None:
            tasks.append(self._stats_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(llm.shutdown)

    def healthy(self) -> bool:
        """Asks the executor each time: /health notices a dead worker without traffic."""
        if self._llm is None or self._failed:
            return False
        if not worker_alive(self._llm):
            self._failed = True
            log.error("TensorRT-LLM's executor is gone: the engine is unhealthy")
            # Their results would never come: end them now, not at their deadlines.
            for live in list(self._live):
                live.sink.fail(EngineError("TensorRT-LLM's executor is gone"))
                if live.task is not None:
                    live.task.cancel()
        return not self._failed

    def limits(self) -> EngineLimits:
        if self._limits is None:
            raise EngineError("the trtllm engine has not started")
        return self._limits

    def stats(self) -> EngineStats:
        return self._stats

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        # The consumer left: free the batch slot and KV blocks now, not on a poll.
        abort: Callable[[], None] = self._submit(request, sink).result.abort
        return abort

    def _llm_kwargs(self, api: TrtllmApi) -> dict[str, Any]:
        s = self._settings
        wanted: dict[str, Any] = {
            "skip_tokenizer_init": True,  # the gateway tokenizes; end ids come per request
            # In-flight batching is both backends' default; block reuse is asked for here.
            "kv_cache_config": api.kv_cache_config_cls(
                enable_block_reuse=s.enable_block_reuse,
                free_gpu_memory_fraction=s.free_gpu_memory_fraction,
                max_tokens=s.kv_cache_max_tokens,
            ),
            "enable_chunked_prefill": s.enable_chunked_prefill,
            "tensor_parallel_size": s.tensor_parallel_size,
            "pipeline_parallel_size": s.pipeline_parallel_size,
            "max_batch_size": s.max_batch_size,
            "max_num_tokens": s.max_num_tokens,
        }
        if s.guided_decoding and "guided_decoding_backend" in api.llm_fields:
            # xgrammar compiles grammars against the vocabulary, so the library needs the
            # tokenizer (the HF directory: an engine directory has none).
            wanted |= {"guided_decoding_backend": "xgrammar", "skip_tokenizer_init": False}
            wanted["tokenizer"] = str(self._model_dir)
        if "trtllm" in api.generation_configs:
            # Newer releases can fill unset sampling fields from generation_config.json: the
            # contract's neutral penalties must stay neutral.
            wanted["generation_config"] = "trtllm"
        elif api.generation_configs:
            log.warning(
                "tensorrt_llm %s's generation_config takes %s, not 'trtllm': left at its default",
                api.version,
                ", ".join(sorted(api.generation_configs)),
            )
        if api.on_engine:
            wanted["gather_generation_logits"] = s.gather_generation_logits or None
        else:
            # Fixed here, not deduced in the worker, so the gateway checks what it enforces.
            wanted["max_seq_len"] = s.max_seq_len or self._checkpoint_max_seq_len()
            # The TensorRT backend always collects iteration stats; PyTorch only if asked.
            wanted["enable_iter_perf_stats"] = s.iteration_stats
        return {key: value for key, value in wanted.items() if value is not None}

    def _choose_worker_process(self) -> None:
        """Set before the first LLM: the library reads it once per process (functools.cache).

        An operator's own `TLLM_WORKER_USE_SINGLE_PROCESS` wins over `single_process`.
        """
        ours = "1" if self._settings.single_process else "0"
        theirs = os.environ.setdefault("TLLM_WORKER_USE_SINGLE_PROCESS", ours)
        if theirs != ours:
            log.warning(
                "TLLM_WORKER_USE_SINGLE_PROCESS=%s is set: it wins over trtllm.single_process=%s",
                theirs,
                self._settings.single_process,
            )

    def _find_support(self, api: TrtllmApi, kwargs: Mapping[str, Any]) -> Support:
        refused = refusals(
            api,
            guided="guided_decoding_backend" in kwargs,
            gathers_logits=bool(kwargs.get("gather_generation_logits")),
        )
        vocab_size = self._vocab_size()
        if vocab_size is None:
            refused[Feature.LOGIT_BIAS] = "the model's config.json gives no vocab_size"
        return Support(vocab_size, refused)

    def _vocab_size(self) -> int | None:
        """The logits' width, which an embedding bias must match."""
        engine = self._settings.engine_dir
        if engine is not None:
            config = _read_config(engine / "config.json").get("pretrained_config", {})
        else:
            config = _read_config(self._model_dir / "config.json")
        size = _text_config(config, "vocab_size")
        return size if isinstance(size, int) else None

    def _checkpoint_max_seq_len(self) -> int:
        path = self._model_dir / "config.json"
        length = _text_config(_read_config(path), "max_position_embeddings")
        if not isinstance(length, int):
            raise EngineError(f"{path} has no max_position_embeddings: set trtllm.max_seq_len")
        return length

    def _submit(self, request: GenerationRequest, sink: Sink) -> _Live:
        if self._llm is None or self._api is None or self._limits is None:
            raise EngineError("the trtllm engine is not running")
        prompt_tokens = len(request.prompt_token_ids)
        room = self._limits.output_room(prompt_tokens)
        # Always explicit: the library's default is 32. Past max_seq_len the executor would
        # clamp it silently, and the TensorRT backend's pre-check reject the request.
        max_tokens = min(request.sampling.max_tokens, room)
        params = sampling_params(self._api, self._support, request, max_tokens)
        try:
            result = self._llm.generate_async(
                request.prompt_token_ids, sampling_params=params, streaming=True
            )
        except Exception as exc:
            raise self._engine_error(exc) from exc
        live = _Live(
            result, prompt_tokens, split_stops(request.sampling), request.sampling.logprobs, sink
        )
        live.task = asyncio.create_task(self._pump(live), name=f"trtllm {request.request_id}")
        self._live.add(live)
        self._arm_stats()
        return live

    async def _pump(self, live: _Live) -> None:
        try:
            async for output in live.result:
                live.step(output)
        except EngineError as exc:  # an output this request cannot use: the executor is fine
            live.result.abort()
            live.sink.fail(exc)
        except Exception as exc:
            live.sink.fail(self._engine_error(exc))
        finally:
            self._live.discard(live)

    def _engine_error(self, exc: Exception) -> EngineError:
        assert self._api is not None
        if isinstance(exc, (ValueError, self._api.request_error_cls)):
            return EngineRequestError(f"TensorRT-LLM refused the request: {exc}")
        self._failed = True  # not the request's fault: the executor broke or shut down
        return EngineError(f"TensorRT-LLM: {exc}")

    def _arm_stats(self) -> None:
        assert self._api is not None
        if self._stats_broken or not (self._api.on_engine or self._settings.iteration_stats):
            return
        self._stats_rearmed = True
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.create_task(self._read_stats(), name="trtllm stats")

    async def _read_stats(self) -> None:
        """Drain iteration stats until the library's queue idles out (it has one reader)."""
        llm = self._llm
        try:
            while self._stats_rearmed:
                self._stats_rearmed = False
                stats = llm.get_stats_async(timeout=self._settings.stats_idle_seconds)
                # Submission re-arms the queue, but a pass timing out just after undoes it.
                stats.mark_undone()
                async for record in stats:
                    self._stats = stats_from(record)
                    self._fit_limits(record)
        except Exception:
            self._stats_broken = True  # once, not once per request
            log.exception("reading TensorRT-LLM iteration stats failed; stats() stays still")
        if not self._live:  # the last record predates the last requests' end
            self._stats = dataclasses.replace(self._stats, running=0, waiting=0)

    def _fit_limits(self, record: Mapping[str, Any]) -> None:
        """Once, from the first record that tells the KV cache's size."""
        if self._kv_checked or self._limits is None or "kvCacheStats" not in record:
            return
        self._kv_checked = True
        fitted = fit_kv_cache(self._limits, record)
        if fitted != self._limits:
            log.warning(
                "the KV cache holds %d tokens per sequence, fewer than max_seq_len %d: serving %s",
                fitted.max_seq_len,
                self._limits.max_seq_len,
                fitted,
            )
            self._limits = fitted


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read {path}: {exc}") from exc
    return config if isinstance(config, dict) else {}


def _text_config(config: Mapping[str, Any], key: str) -> Any:
    """`key` of a model config; multimodal checkpoints nest the language model's."""
    value = config.get(key)
    if value is None:
        value = (config.get("text_config") or {}).get(key)
    return value
