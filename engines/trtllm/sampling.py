"""The contract's sampling as `tensorrt_llm.SamplingParams`, and its logprobs back.

What TensorRT-LLM does differently, and how the mapping makes up for it:

* min_tokens holds back the end id only (TorchSampler's `_apply_min_length_penalty`, the
  C++ decoder's `penaltyKernels.cu`): stop words stay live (NVIDIA/TensorRT-LLM#4776), and
  with the end id -1 it masks vocabulary entry -1. With several stop ids, one is the end id
  and the others are kept from the library and watched by the engine (`Stops`).
* What a release's sampler would silently skip (engines/trtllm/releases.py) is refused:
  a seed only where it matters, when the request samples rather than decodes greedily.
* Presence and frequency penalties count prompt tokens unless `prompt_ignore_length`
  skips them; repetition counts them, as the contract wants.
* logprobs=0 means none on the TensorRT backend and before 1.3 (it is falsy): 1 is
  asked for and the top entries are cut to the request's k.
* Each generated token's logprobs come as {token id: Logprob(logprob, rank)}, the top k
  plus the sampled token when it ranks lower, or as a bare float (the sampled token's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engines.base import (
    ConstraintKind,
    EngineError,
    EngineRequestError,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from engines.trtllm.releases import Feature


@dataclass(frozen=True, slots=True)
class Support:
    """What the running engine can do per request, found out once at start."""

    vocab_size: int | None  # logits per step; None: unknown, so logit_bias is refused
    refused: Mapping[Feature, str]  # feature -> why (see engines.trtllm.compat.refusals)


def sampling_params(api: Any, support: Support, request: GenerationRequest, max_tokens: int) -> Any:
    """`api` is the TrtllmApi of compat.py; raises EngineRequestError for what it cannot do."""
    sampling = request.sampling
    _check(support, sampling)
    kwargs: dict[str, Any] = {
        "max_tokens": max_tokens,
        "seed": sampling.seed,
        "detokenize": False,  # the gateway detokenizes, even where the library has a tokenizer
        **_choice(sampling),
        **_stops(sampling),
        **_penalties(sampling, len(request.prompt_token_ids)),
    }
    if sampling.logprobs is not None:
        kwargs["logprobs"] = max(sampling.logprobs, 1)
    if sampling.logit_bias:
        kwargs["embedding_bias"] = _embedding_bias(api, support, sampling.logit_bias)
    if sampling.constraint is not None:
        kind, spec = sampling.constraint.kind, sampling.constraint.spec
        guide = (
            {"json_object": True} if kind is ConstraintKind.JSON_OBJECT else {_GUIDES[kind]: spec}
        )
        kwargs["guided_decoding"] = api.guided_decoding_params_cls(**guide)
    try:
        return api.sampling_params_cls(**kwargs)
    except ValueError as exc:  # SamplingParams' own validation
        raise EngineRequestError(f"TensorRT-LLM refused the sampling parameters: {exc}") from exc


_GUIDES = {
    ConstraintKind.JSON_SCHEMA: "json",
    ConstraintKind.REGEX: "regex",
    ConstraintKind.GRAMMAR: "grammar",  # xgrammar's EBNF, as TensorRT-LLM compiles it
}


def _check(support: Support, sampling: SamplingParams) -> None:
    asked = {
        Feature.CONSTRAINT: sampling.constraint is not None,
        Feature.LOGPROBS: sampling.logprobs is not None,
        Feature.PENALTY: bool(sampling.presence_penalty or sampling.frequency_penalty),
        Feature.REPETITION_PENALTY: sampling.repetition_penalty != 1.0,
        Feature.SEED: sampling.seed is not None and not _greedy(sampling),
        # Without stop ids nothing is held back (and no min_tokens is sent).
        Feature.MIN_TOKENS: bool(sampling.min_tokens and sampling.stop_token_ids),
        Feature.LOGIT_BIAS: bool(sampling.logit_bias),
    }
    for feature, wanted in asked.items():
        if wanted and feature in support.refused:
            raise EngineRequestError(f"{feature}: {support.refused[feature]}")


def _greedy(sampling: SamplingParams) -> bool:
    return sampling.temperature == 0 or sampling.top_k == 1


def _choice(sampling: SamplingParams) -> dict[str, Any]:
    if sampling.temperature == 0:
        # Greedy through top_k=1, which no generation_config default can turn back to sampling.
        return {"top_k": 1}
    # All explicit, so no generation_config default fills one in; top_k 0 means off.
    return {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}


@dataclass(frozen=True, slots=True)
class Stops:
    """A request's stop ids: those TensorRT-LLM ends on, and those the engine ends on."""

    library: frozenset[int]  # sent as end_id and stop_token_ids
    late: frozenset[int] = frozenset()  # past min_tokens, the engine ends the output on these
    min_tokens: int = 0

    def cut(self, ids: Sequence[int], generated: int) -> int | None:
        """Where a late stop id ends a step's `ids`, which follow `generated` earlier ones."""
        for index, token in enumerate(ids):
            if token in self.late and generated + index >= self.min_tokens:
                return index
        return None


def split_stops(sampling: SamplingParams) -> Stops:
    """min_tokens holds back the end id only, so any other stop id sent would end the
    output before min_tokens: with several, the smallest is the end id and the rest late."""
    stop_ids = sampling.stop_token_ids
    if not sampling.min_tokens or len(stop_ids) < 2:
        return Stops(stop_ids)
    end_id = min(stop_ids)
    return Stops(frozenset({end_id}), stop_ids - {end_id}, sampling.min_tokens)


def _stops(sampling: SamplingParams) -> dict[str, Any]:
    stop_ids = sorted(split_stops(sampling).library)
    if not stop_ids:
        # No EOS stop at all. Without a tokenizer the library cannot fill end_id in; -1
        # never matches, and is what ignore_eos sends the executor anyway.
        return {"end_id": -1, "ignore_eos": True, "stop_token_ids": []}
    stops: dict[str, Any] = {"end_id": stop_ids[0], "stop_token_ids": stop_ids}
    if sampling.min_tokens:
        stops["min_tokens"] = sampling.min_tokens  # the end id is then the only stop id sent
    return stops


def _penalties(sampling: SamplingParams, prompt_tokens: int) -> dict[str, Any]:
    """Only what differs from the library's neutral defaults, so plain requests stay plain."""
    penalties: dict[str, Any] = {}
    if sampling.repetition_penalty != 1.0:
        penalties["repetition_penalty"] = sampling.repetition_penalty
    if sampling.presence_penalty or sampling.frequency_penalty:
        penalties["presence_penalty"] = sampling.presence_penalty
        penalties["frequency_penalty"] = sampling.frequency_penalty
        penalties["prompt_ignore_length"] = prompt_tokens  # count the output only (OpenAI)
    return penalties


def _embedding_bias(api: Any, support: Support, logit_bias: Sequence[tuple[int, float]]) -> Any:
    """A float32 [vocab_size] tensor: the executor checks the size against the model's."""
    vocab_size = support.vocab_size
    assert vocab_size is not None  # refused in _check otherwise
    torch = api.torch
    bias = torch.zeros(vocab_size, dtype=torch.float32)
    for token_id, value in logit_bias:
        if not 0 <= token_id < vocab_size:
            raise EngineRequestError(
                f"logit_bias: token id {token_id} is not in the vocabulary [0, {vocab_size})"
            )
        bias[token_id] += value
    return bias


def token_logprobs(token_ids: Sequence[int], entries: Sequence[Any], k: int) -> list[TokenLogprob]:
    """One `TokenLogprob` per token from a step's `logprobs_diff`.

    `entries` may run one past `token_ids`: the library cuts a stop word's token from the
    ids but not from the logprobs.
    """
    if len(entries) < len(token_ids):
        raise EngineError(
            f"TensorRT-LLM returned {len(entries)} logprobs for {len(token_ids)} tokens"
        )
    return [_token_logprob(t, entry, k) for t, entry in zip(token_ids, entries, strict=False)]


def _token_logprob(token_id: int, entry: Any, k: int) -> TokenLogprob:
    if not isinstance(entry, dict):  # the sampled token's logprob alone
        if k:
            raise EngineError("TensorRT-LLM returned no top logprobs")
        return TokenLogprob(float(entry))
    sampled = entry.get(token_id)
    if sampled is None:
        raise EngineError(f"TensorRT-LLM returned no logprob for the sampled token {token_id}")
    # By logprob, not rank: some releases report rank 0 throughout. A sampled token outside
    # the top k ranks below all of them, so it falls off the cut.
    best = sorted(entry.items(), key=lambda item: -item[1].logprob)[:k]
    return TokenLogprob(sampled.logprob, tuple((tid, lp.logprob) for tid, lp in best))
