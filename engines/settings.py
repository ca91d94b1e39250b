"""Each engine's own section of the gateway settings (`engine_name.field` in YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformersSettings(_Section):
    """transformers' continuous batching on the CPU (the embedded default), or on one GPU."""

    # "cuda": the model is loaded onto the current CUDA device (see docs/gpu-embedded.md).
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "bfloat16"] = "float32"
    # The KV cache is always bounded here: left unset, transformers sizes it
    # from host RAM (about 9 GB for a 135M model).
    num_blocks: PositiveInt = 64
    block_size: PositiveInt = 256
    max_batch_tokens: PositiveInt = 512
    max_batch_size: PositiveInt = 32
    max_seq_len: PositiveInt | None = None  # None: the model's own, capped by the cache
    threads: PositiveInt | None = None  # torch intra-op threads; None: torch's default
    # The model and its step loop run in a worker process of the gateway's, with an
    # interpreter lock of their own (engines/worker/). Off: in the gateway's process.
    worker: bool = True
    # transformers may replace layers with kernels fetched from the Hugging Face Hub
    # (the `kernels` package, on CUDA). Off, loading never reaches for the network,
    # as air-gapped GPU hosts need; on, the kernels must be in the local Hub cache.
    hub_kernels: bool = False


class SyntheticSettings(_Section):
    """A weightless engine with real batch semantics, for tests and load tests."""

    prefill_seconds: float = Field(default=0.0, ge=0)  # per request, on admission
    token_seconds: float = Field(default=0.005, ge=0)  # per engine step
    max_batch_size: PositiveInt = 4096
    max_seq_len: PositiveInt = 8192
    first_token_id: int = Field(default=1000, ge=0)  # emitted ids cycle through
    token_id_count: PositiveInt = 1000  # [first_token_id, first_token_id + count)
    # Injected faults: every Nth request fails after its first token; the whole
    # engine dies after N generated tokens. 0 turns each off.
    fail_every_nth_request: int = Field(default=0, ge=0)
    fail_engine_after_tokens: int = Field(default=0, ge=0)
    # In a worker process, as the embedded engine runs: shows what that hand-off costs.
    worker: bool = False


class TrtllmSettings(_Section):
    """The TensorRT-LLM LLM API (engines/trtllm/). A limit left None is the library's default."""

    # A prebuilt TensorRT engine directory (tensorrt_llm 1.2 and older only). None: the
    # model directory's Hugging Face checkpoint runs on the PyTorch backend.
    engine_dir: Path | None = None
    free_gpu_memory_fraction: float = Field(default=0.9, gt=0, le=1)  # of free memory, for KV
    # A cap on the KV cache in tokens (Triton's max_tokens_in_paged_kv_cache); with the
    # fraction above, the smaller of the two wins. None: the fraction alone.
    kv_cache_max_tokens: PositiveInt | None = None
    enable_block_reuse: bool = True  # requests sharing a prompt prefix reuse its KV blocks
    max_batch_size: PositiveInt | None = None
    max_num_tokens: PositiveInt | None = None  # tokens per engine step
    # Prompt plus output. None: the checkpoint's max_position_embeddings (an engine's own).
    max_seq_len: PositiveInt | None = None
    enable_chunked_prefill: bool = False  # off, a prompt must fit in one step (max_num_tokens)
    tensor_parallel_size: PositiveInt = 1
    pipeline_parallel_size: PositiveInt = 1
    # The executor in this process (TLLM_WORKER_USE_SINGLE_PROCESS, TP 1 only) instead of
    # the library's worker process, which NVIDIA picked for streaming performance.
    single_process: bool = False
    iteration_stats: bool = True  # per-step stats behind `stats()` (enable_iter_perf_stats)
    stats_idle_seconds: PositiveFloat = 2.0  # the stats reader rests after this long idle
    # Constrained output (JSON, regex, grammars) through xgrammar. The library then loads the
    # tokenizer too. Off, requests with a constraint are refused.
    guided_decoding: bool = True
    # Prebuilt engines only: each step's logits come back so that logprobs can be computed
    # (the PyTorch backend computes them in its sampler). It moves the executor into the
    # gateway's process. Off, requests for logprobs are refused.
    gather_generation_logits: bool = False
