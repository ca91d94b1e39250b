"""Prefix-cache figures that transformers' continuous batching does not keep.

Its paged cache finds a prompt's cached prefix in `search_prefix_match`, which
the scheduler calls on the manager thread each step a request waits. Wrapping
that one method gives the cumulative queries, hits and reused blocks behind
`EngineStats`, and each request's cached tokens for its usage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class PrefixLookup:
    """One request's lookups; written on the manager thread, read at its end."""

    looked_up: bool = False
    cached_tokens: int = 0


@dataclass(slots=True)
class PrefixCounters:
    """Cumulative figures; written on the manager thread only."""

    block_size: int
    queries: int = 0  # prompt tokens looked up
    hits: int = 0  # prompt tokens found
    reused_blocks: int = 0

    def install(self, cache: Any, lookups: Callable[[str], PrefixLookup | None]) -> None:
        """Count `cache`'s searches for the requests `lookups` knows (others: not ours)."""
        search = cache.search_prefix_match

        def search_and_count(request_id: str, prompt_ids: list[int]) -> int:
            matched = int(search(request_id, prompt_ids))
            lookup = lookups(request_id)
            if lookup is None:
                return matched
            # A waiting request is looked up again each step until scheduled.
            if not lookup.looked_up:
                lookup.looked_up = True
                self.queries += len(prompt_ids)
            if matched and not lookup.cached_tokens:
                lookup.cached_tokens = matched
                self.hits += matched
                self.reused_blocks += matched // self.block_size
            return matched

        cache.search_prefix_match = search_and_count
