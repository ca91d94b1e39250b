"""Driving transformers' continuous-batching manager: its configuration, and the
few reads of its internals the engine needs.

transformers' own per-request sampling is three processors (temperature, top-k,
top-p) that exist only if the base GenerationConfig has non-default values for
them, with sampling versus argmax one switch for the whole batch; they sort the
vocabulary twice per row per step and cannot honour a seed. So the manager is
created greedy, with no processor of transformers', and given one of ours
(`engines/transformers/sampler.py`) that chooses every token itself.

Traps in transformers 5.23 around that processor:
- The manager builds its processor list in `__init__` from the generation
  config; ours replaces it before `start()`, which sizes the per-step argument
  storage from it. A list built by hand counts no argument row for a processor
  of ours (`tensors_required` counts only the ones transformers converted), and
  the manager thread would fail on the missing row: we set it to 1.
- The list's `do_processing` is fixed at its creation (non-empty: true); it is
  what makes the model runner call the processors at all. The config was
  resolved with the manager's own empty list (`has_logit_processors` false),
  which only picks the memory share of a cache sized from free memory: moot,
  `num_blocks` is always set.
- CUDA graphs would capture the processor once and replay it without running
  its Python (and async batching rides on graphs): both are off.
"""

from __future__ import annotations

import contextlib
import queue
from typing import Any

from engines.base import EngineError
from engines.settings import TransformersSettings


def placement(settings: TransformersSettings) -> dict[str, Any]:
    """`from_pretrained` arguments for the device; none on the CPU (its default)."""
    if settings.device == "cpu":
        return {}
    import torch

    if not torch.cuda.is_available():
        raise EngineError(f"device {settings.device!r} was asked for, but torch sees no GPU")
    return {"device_map": settings.device}


def create_manager(model: Any, settings: TransformersSettings, processor: Any) -> Any:
    """A manager, not started, whose one logits processor is `processor`."""
    from transformers import ContinuousBatchingConfig, GenerationConfig, LogitsProcessorList
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessorList,
    )

    eos = model.generation_config.eos_token_id
    generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=False, eos_token_id=eos, pad_token_id=eos
    )
    cb_config = ContinuousBatchingConfig(
        num_blocks=settings.num_blocks,  # set, so the cache is never sized from host RAM
        page_size=settings.block_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_requests_per_batch=settings.max_batch_size,
        use_cuda_graph=False,
        use_async_batching=False,
    )
    manager = model.init_continuous_batching(
        generation_config=generation_config, continuous_batching_config=cb_config
    )
    processors = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([processor]))
    processors.tensors_required = 1  # the slot row (the module docstring says why)
    manager.logit_processor = processors
    return manager


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
