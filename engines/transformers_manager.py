"""Driving transformers' continuous-batching manager: its configuration, each
request's sampling arguments, and the few reads of its internals the engine needs.

Per-request temperature/top_k/top_p exist only if the base GenerationConfig has
non-default values for them, and sampling versus argmax is one switch for the
whole batch: so sampling is always on, and greedy is a sampler that keeps one
token. (Its cost: the top-k and top-p processors sort the vocabulary for every
row of every step.)
"""

from __future__ import annotations

import contextlib
import queue
from typing import Any

from engines.base import EngineError, SamplingParams
from engines.settings import TransformersSettings

# Never used for sampling (every request passes its own values); non-default
# only so that transformers creates the three per-request processors.
BASE_SAMPLING: dict[str, Any] = {"do_sample": True, "temperature": 0.7, "top_k": 50, "top_p": 0.95}
# top_k=1 keeps the argmax and exact ties only; a top_p below float32's epsilon
# then keeps a single token, so a tie cannot make the sampler pick at random.
GREEDY: dict[str, Any] = {"temperature": 1.0, "top_k": 1, "top_p": 1e-9}
# Below this (or NaN), a temperature is greedy: dividing logits by a tiny one
# overflows to inf, and a NaN probability kills transformers' manager thread.
_MIN_TEMPERATURE = 1e-5


def placement(settings: TransformersSettings) -> dict[str, Any]:
    """`from_pretrained` arguments for the device; none on the CPU (its default)."""
    if settings.device == "cpu":
        return {}
    import torch

    if not torch.cuda.is_available():
        raise EngineError(f"device {settings.device!r} was asked for, but torch sees no GPU")
    return {"device_map": settings.device}


def create_manager(model: Any, settings: TransformersSettings) -> Any:
    from transformers import ContinuousBatchingConfig, GenerationConfig

    eos = model.generation_config.eos_token_id
    generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        **BASE_SAMPLING, eos_token_id=eos, pad_token_id=eos
    )
    cb_config = ContinuousBatchingConfig(
        num_blocks=settings.num_blocks,  # set, so the cache is never sized from host RAM
        page_size=settings.block_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_requests_per_batch=settings.max_batch_size,
        per_request_processors=True,
    )
    return model.init_continuous_batching(
        generation_config=generation_config, continuous_batching_config=cb_config
    )


def sampling_kwargs(sampling: SamplingParams, vocab_size: int) -> dict[str, Any]:
    """Per-request processor arguments; transformers checks their types (floats, int).

    `seed` is not honoured: transformers draws from one generator for the batch.
    """
    if not sampling.temperature >= _MIN_TEMPERATURE:  # NaN included
        return dict(GREEDY)
    # transformers' top_k=0 would keep one token; the whole vocabulary means no filter.
    top_k = vocab_size if sampling.top_k <= 0 else min(sampling.top_k, vocab_size)
    return {
        "temperature": float(sampling.temperature),
        "top_k": int(top_k),
        "top_p": float(min(max(sampling.top_p, 0.0), 1.0)),
    }


def drop_stray_outputs(manager: Any) -> None:
    """Empty the router's shared queue, which nothing here reads.

    An output of the step in flight when a request is aborted finds no handler
    and lands there; left alone, one would pile up per abort.
    """
    if manager is None:
        return
    with contextlib.suppress(queue.Empty):
        while True:
            manager.output_router.output_queue.get_nowait()


def kv_blocks_used(cache: Any) -> int:
    """Blocks held by requests; blocks kept only for prefix reuse count as free."""
    pool = cache.pool
    blocks_per_sector = int(cache.num_blocks) // max(1, int(pool.num_sectors))
    free = pool.num_free_sectors * blocks_per_sector
    for allocator in cache.cache_allocators.values():
        free += pool.count_free_blocks(allocator.index) + len(allocator.ledger.cached_blocks)
    return int(cache.num_blocks) - int(free)
