"""The stand-in's `SamplingParams`, `GuidedDecodingParams` and logprobs, per release.

As read in tensorrt_llm's sampling_params.py, executor/result.py, llmapi/llm.py and
_torch/pyexecutor/sampler.py (1.x) and the 1.3.0rc7 API reference:

* `SamplingParams` is a kw-only dataclass; `logprobs=True` becomes 1, and 0 stays 0.
  Releases differ in fields: `prompt_ignore_length` (1.2+), `logprobs_mode` (with which
  the PyTorch sampler always reports the sampled token), `logprobs_simple_format`.
* `GuidedDecodingParams` takes exactly one guide.
* Each generated token's logprobs are a {token id: Logprob(logprob, rank)} dict:
  - PyTorch with logprobs_mode: the top k, plus the sampled token (its true rank) when
    it ranks lower; k = 0 gives the sampled token alone, or a bare float with
    logprobs_simple_format.
  - PyTorch before logprobs_mode: the top k only; k = 0 gives none.
  - TensorRT backend (computed from the generation logits): as PyTorch with
    logprobs_mode, except that k = 0 gives none.

The fake distribution: at output position p, token `token_base + (p + j) % token_span`
has rank j + 1 and logprob -0.5 j - 0.25; any other id ranks last at -20.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Logprob:
    logprob: float
    rank: int | None = None


@dataclass(slots=True, kw_only=True)
class GuidedDecodingParams:
    json: str | dict[str, Any] | None = None
    regex: str | None = None
    grammar: str | None = None
    json_object: bool = False
    structural_tag: str | None = None

    def __post_init__(self) -> None:
        guides = sum(bool(getattr(self, f.name)) for f in dataclasses.fields(self))
        if guides > 1:
            raise ValueError(f"Only one guide can be used for a request, but got {guides}.")


@dataclass(kw_only=True)
class _AllSamplingParams:
    end_id: int | None = None
    pad_id: int | None = None
    max_tokens: int = 32
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    embedding_bias: Any = None  # torch.Tensor
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    seed: int | None = None
    min_tokens: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    prompt_ignore_length: int | None = None
    logprobs: int | None = None
    logprobs_mode: str = "raw"
    logprobs_simple_format: bool = False
    return_generation_logits: bool = False
    guided_decoding: GuidedDecodingParams | None = None
    ignore_eos: bool = False
    detokenize: bool = True

    def __post_init__(self) -> None:
        if self.pad_id is None:
            self.pad_id = self.end_id
        if self.top_p is not None and not 0 <= self.top_p <= 1:
            raise ValueError(f"require 0 <= top_p <= 1, got top_p={self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"require top_k >= 0, got top_k={self.top_k}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"require temperature >= 0, got temperature={self.temperature}")
        self.logprobs = self.logprobs and int(self.logprobs)


def sampling_params_cls(missing: frozenset[str]) -> type:
    """`SamplingParams` of a release that lacks the `missing` fields."""
    kept = [
        (f.name, f.type, field(default=f.default))
        for f in dataclasses.fields(_AllSamplingParams)
        if f.name not in missing
    ]
    return dataclasses.make_dataclass(
        "SamplingParams",
        kept,
        kw_only=True,
        namespace={"__post_init__": _AllSamplingParams.__post_init__},
    )


@dataclass(frozen=True)
class Vocab:
    base: int
    span: int

    def logprob(self, token_id: int, position: int) -> Logprob:
        if not self.base <= token_id < self.base + self.span:
            return Logprob(-20.0, self.span + 1)
        rank = (token_id - self.base - position) % self.span + 1
        return Logprob(-0.5 * (rank - 1) - 0.25, rank)

    def top(self, k: int, position: int) -> dict[int, Logprob]:
        ids = (self.base + (position + j) % self.span for j in range(k))
        return {token_id: self.logprob(token_id, position) for token_id in ids}


def token_logprobs(
    vocab: Vocab, params: Any, token_id: int, position: int, *, trt_backend: bool
) -> dict[int, Logprob] | float | None:
    """One generated token's entry in `CompletionOutput.logprobs`; None when none is kept."""
    k = params.logprobs
    modern = hasattr(params, "logprobs_mode")
    if k is None or (not k and (trt_backend or not modern)):
        return None
    sampled = vocab.logprob(token_id, position)
    if not k and getattr(params, "logprobs_simple_format", False):
        return sampled.logprob
    entry = vocab.top(k, position)
    if trt_backend or modern:
        entry.setdefault(token_id, sampled)
    return entry
