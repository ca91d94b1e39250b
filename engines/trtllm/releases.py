"""Which request features each TensorRT-LLM release serves as the contract means them.

Prebuilt engines sample with the C++ decoder, which applies penalties, seeds and
min_tokens. The PyTorch backend samples with TorchSampler (`sampler_type="auto"` picks it
for every request without beam search), which caught up later, as read in
`tensorrt_llm/_torch/pyexecutor/sampler.py` and these pull requests of NVIDIA/TensorRT-LLM:

* repetition, presence and frequency penalties: accepted but ignored until #16485
  (merged 2026-07-16). 1.3.0rc26 is the first release read whose sampling page has
  TorchSampler as the only sampler, with penalties among its features.
* seed: ignored until #17172 (merged 2026-08-04, "per-request seed in TorchSampler");
  1.4.0rc1 is the first release known to be cut after it.
* min_tokens: not applied before #7808 (2025-09), then compared with prompt plus output
  (`max_beam_num_tokens`) until #12166 (merged 2026-03-12, after 1.3.0rc7). Whether either
  fix reached the 1.0 to 1.2 release branches is not established, so those refuse it.

A version this module cannot read counts as the oldest: a refusal is safer than a
request that silently does less than it asked for.
"""

from __future__ import annotations

import enum
import re

Release = tuple[int, int, int, int]  # major, minor, patch, release candidate

_FINAL = 1 << 30  # a final release sorts after its release candidates
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:rc(\d+))?")

TORCH_PENALTIES: Release = (1, 3, 0, 26)
TORCH_SEED: Release = (1, 4, 0, 1)
TORCH_MIN_TOKENS: Release = (1, 3, 0, 8)


class Feature(enum.StrEnum):
    """A request feature that a release or this server's configuration may not serve."""

    CONSTRAINT = "constraint"
    LOGPROBS = "logprobs"
    PENALTY = "penalty"  # presence or frequency
    REPETITION_PENALTY = "repetition_penalty"
    SEED = "seed"
    MIN_TOKENS = "min_tokens"
    LOGIT_BIAS = "logit_bias"


def release(version: str) -> Release:
    """`1.2.1` as (1, 2, 1, final), `1.3.0rc24.post1` as (1, 3, 0, 24); unreadable as oldest."""
    match = _VERSION.match(version)
    if match is None:
        return (0, 0, 0, 0)
    major, minor, patch, rc = match.groups()
    return (int(major), int(minor), int(patch), _FINAL if rc is None else int(rc))


def torch_sampler_refusals(version: str) -> dict[Feature, str]:
    """What TorchSampler of `version` would silently not do, each with the client's reason."""
    found = release(version)
    sampler = f"the PyTorch sampler of tensorrt_llm {version}"
    refused: dict[Feature, str] = {}
    if found < TORCH_PENALTIES:
        ignored = f"{sampler} ignores penalties (NVIDIA/TensorRT-LLM#16485)"
        refused[Feature.PENALTY] = refused[Feature.REPETITION_PENALTY] = ignored
    if found < TORCH_SEED:
        refused[Feature.SEED] = (
            f"{sampler} ignores per-request seeds (NVIDIA/TensorRT-LLM#17172); "
            "send temperature 0 for repeatable output"
        )
    if found < TORCH_MIN_TOKENS:
        refused[Feature.MIN_TOKENS] = (
            f"{sampler} may end before min_tokens (NVIDIA/TensorRT-LLM#7808, #12166)"
        )
    return refused
