"""What the installed tensorrt_llm offers: the one place that knows its versions apart.

1.0 to 1.2 ship `tensorrt_llm.LLM` (the PyTorch backend, fed Hugging Face checkpoints) and
`tensorrt_llm._tensorrt_engine.LLM` (prebuilt TensorRT engines); releases after 1.2 drop
the latter. `LLM(...)` raises on any keyword its pydantic args model lacks, so keywords
are checked against that model's fields before the call.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from engines.base import EngineError, EngineLimits
from engines.trtllm.releases import Feature, torch_sampler_refusals

log = logging.getLogger(__name__)

_ENGINE_MODULE = "tensorrt_llm._tensorrt_engine"


@dataclass(frozen=True, slots=True)
class TrtllmApi:
    version: str
    llm_cls: Any
    sampling_params_cls: Any
    guided_decoding_params_cls: Any
    kv_cache_config_cls: Any
    request_error_cls: type[Exception]  # a failed request, as opposed to a failed executor
    llm_fields: frozenset[str]
    sampling_fields: frozenset[str]  # the keywords this version's SamplingParams takes
    # The values its `generation_config` keyword accepts; empty where it has none.
    generation_configs: frozenset[str]
    on_engine: bool  # prebuilt TensorRT engine rather than a checkpoint
    torch: Any  # tensorrt_llm's own dependency, for embedding_bias

    def llm_kwargs(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """`wanted` less the keywords this version's `LLM` would reject."""
        missing = sorted(set(wanted) - self.llm_fields)
        if missing:
            log.warning("tensorrt_llm %s takes no %s; left out", self.version, ", ".join(missing))
        return {key: value for key, value in wanted.items() if key in self.llm_fields}


def load_api(*, on_engine: bool) -> TrtllmApi:
    """Import tensorrt_llm, or fail with what to install or change."""
    trtllm = _import_trtllm()
    version = str(getattr(trtllm, "__version__", "unknown"))
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < 1:
        raise EngineError(f"tensorrt_llm {version} is too old: the trtllm engine needs 1.x")
    llmapi = importlib.import_module("tensorrt_llm.llmapi")
    llm_args = importlib.import_module("tensorrt_llm.llmapi.llm_args")
    if on_engine:
        llm_cls, args_cls = _engine_llm_cls(version), llm_args.TrtLlmArgs
    else:
        llm_cls, args_cls = llmapi.LLM, llm_args.TorchLlmArgs
    return TrtllmApi(
        version=version,
        llm_cls=llm_cls,
        sampling_params_cls=llmapi.SamplingParams,
        guided_decoding_params_cls=llmapi.GuidedDecodingParams,
        kv_cache_config_cls=llmapi.KvCacheConfig,
        request_error_cls=llmapi.RequestError,
        llm_fields=frozenset(args_cls.model_fields),
        generation_configs=_literal_values(args_cls.model_fields.get("generation_config")),
        sampling_fields=frozenset(inspect.signature(llmapi.SamplingParams).parameters),
        on_engine=on_engine,
        torch=importlib.import_module("torch"),
    )


def refusals(api: TrtllmApi, *, guided: bool, gathers_logits: bool) -> dict[Feature, str]:
    """The request features this engine cannot serve, each with what the client is told."""
    release = f"tensorrt_llm {api.version}"
    # The C++ decoder of prebuilt engines applies penalties, seeds and min_tokens.
    refused = {} if api.on_engine else torch_sampler_refusals(api.version)
    if "guided_decoding_backend" not in api.llm_fields:
        refused[Feature.CONSTRAINT] = f"{release} has no guided decoding"
    elif not guided:
        refused[Feature.CONSTRAINT] = (
            "guided decoding is off on this server (trtllm.guided_decoding)"
        )
    if api.on_engine and not gathers_logits:
        # The TensorRT backend computes logprobs from each step's logits, returned only if asked.
        refused[Feature.LOGPROBS] = (
            "this server's engine returns no logits to compute logprobs from "
            "(trtllm.gather_generation_logits)"
        )
    elif not api.on_engine and "logprobs_mode" not in api.sampling_fields:
        # Before logprobs_mode the PyTorch sampler reported the top k only, often without
        # the sampled token, and nothing for k = 0.
        refused[Feature.LOGPROBS] = f"{release} does not report the sampled token's logprob"
    if "prompt_ignore_length" not in api.sampling_fields:
        # Without it TensorRT-LLM counts prompt tokens too; OpenAI counts the output only.
        refused.setdefault(
            Feature.PENALTY, f"{release} applies presence and frequency penalties to the prompt"
        )
    return refused


def _literal_values(field: Any) -> frozenset[str]:
    """The strings a pydantic field's `Literal[...]` annotation allows (optional or not)."""
    annotation = getattr(field, "annotation", None)
    values: set[str] = set()
    for arm in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arm) is typing.Literal:
            values.update(str(value) for value in typing.get_args(arm))
    return frozenset(values)


def _import_trtllm() -> ModuleType:
    try:
        return importlib.import_module("tensorrt_llm")
    except ImportError as exc:
        raise EngineError(
            "the trtllm engine needs TensorRT-LLM 1.x on a CUDA machine "
            f"(pip install tensorrt-llm); importing tensorrt_llm failed: {exc}"
        ) from exc


def _engine_llm_cls(version: str) -> Any:
    try:
        return importlib.import_module(_ENGINE_MODULE).LLM
    except ModuleNotFoundError as exc:
        if exc.name != _ENGINE_MODULE:
            raise
        raise EngineError(
            f"tensorrt_llm {version} cannot run prebuilt TensorRT engines ({_ENGINE_MODULE} "
            "went away after 1.2): unset trtllm.engine_dir to serve the Hugging Face "
            "checkpoint, or install tensorrt-llm<=1.2"
        ) from exc


def read_limits(llm: Any, *, on_engine: bool, chunked_prefill: bool) -> EngineLimits:
    """The limits the executor enforces, read back from the built `LLM`.

    The C++ executor throws on a prompt over max_input_len and silently clamps output
    past max_seq_len; without chunked prefill a prompt must also fit in one step.
    """
    args = llm.args
    # Releases after 1.2 may drop the PyTorch backend's placeholder build_config.
    build: Any = getattr(args, "build_config", None)
    if on_engine:
        # Baked in at build time; the runtime's max_batch_size/max_num_tokens only lower them.
        max_seq_len, max_input_len = build.max_seq_len, build.max_input_len
        max_batch_size = _lowest(args.max_batch_size, build.max_batch_size)
        max_num_tokens = _lowest(args.max_num_tokens, build.max_num_tokens)
    else:
        max_seq_len = args.max_seq_len
        max_input_len = max_seq_len - 1  # room for one output token; no separate cap here
        max_batch_size = _first(args.max_batch_size, getattr(build, "max_batch_size", None))
        max_num_tokens = _first(args.max_num_tokens, getattr(build, "max_num_tokens", None))
    if not chunked_prefill:
        max_input_len = min(max_input_len, max_num_tokens)
    return EngineLimits(
        max_seq_len=max_seq_len,
        max_input_len=max_input_len,
        max_batch_size=max_batch_size,
        max_num_tokens=max_num_tokens,
    )


def cached_tokens(output: Any) -> int:
    """Prompt tokens served from the KV cache, where the release reports them at all."""
    return int(getattr(output, "cached_tokens", 0) or 0)


def _lowest(runtime: int | None, built: int) -> int:
    return built if runtime is None else min(runtime, built)


def _first(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise EngineError("tensorrt_llm did not report its batch limits")


def fit_kv_cache(limits: EngineLimits, record: Mapping[str, Any]) -> EngineLimits:
    """`limits` lowered to the tokens one sequence can hold in the KV cache, if fewer.

    The PyTorch executor lowers max_seq_len to what the cache it allocated can hold
    (pyexecutor `KvCacheCreator`) without writing it back to `llm.args`; an iteration stats
    record (`kvCacheStats`: maxNumBlocks x tokensPerBlock) tells what it holds.
    """
    kv = record.get("kvCacheStats") or {}
    capacity = int(kv.get("maxNumBlocks", 0)) * int(kv.get("tokensPerBlock", 0))
    if capacity <= 1 or capacity >= limits.max_seq_len:
        return limits
    max_input_len = min(limits.max_input_len, capacity - 1)
    return dataclasses.replace(limits, max_seq_len=capacity, max_input_len=max_input_len)


def worker_alive(llm: Any) -> bool:
    """Whether the executor still runs, found out without submitting a request.

    Newer releases answer `_check_health()`, which trtllm-serve's /health asks. 1.x only
    notes a dead worker process in its proxy's `_error_queue` (executor/proxy.py
    `mpi_done_callback`, once the worker's MPI future is done) and raises it at the next
    submission. The single-process executor has neither: it dies with the gateway.
    """
    check = getattr(llm, "_check_health", None)
    try:
        if callable(check):
            return bool(check())
        executor = getattr(llm, "_executor", None)
        if any(future.done() for future in getattr(executor, "mpi_futures", None) or ()):
            return False
        errors = getattr(executor, "_error_queue", None)
        return errors is None or bool(errors.empty())
    except Exception:
        log.exception("asking TensorRT-LLM whether its executor runs failed")
        return False
