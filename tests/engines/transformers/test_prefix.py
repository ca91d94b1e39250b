from __future__ import annotations

from engines.transformers.prefix import PrefixCounters, PrefixLookup


class _Cache:
    """A paged cache whose every search finds `matched` tokens."""

    def __init__(self, matched: int) -> None:
        self.matched = matched

    def search_prefix_match(self, request_id: str, prompt_ids: list[int]) -> int:
        return self.matched


def test_a_waiting_request_counts_once_and_unknown_requests_not_at_all() -> None:
    cache = _Cache(matched=0)
    counters = PrefixCounters(block_size=4)
    lookups = {"ours": PrefixLookup()}
    counters.install(cache, lookups.get)
    for _ in range(3):  # searched again each step while it waits
        assert cache.search_prefix_match("ours", list(range(10))) == 0
    cache.search_prefix_match("warm-up", list(range(10)))
    assert (counters.queries, counters.hits, counters.reused_blocks) == (10, 0, 0)
    assert lookups["ours"] == PrefixLookup(looked_up=True, cached_tokens=0)


def test_a_hit_is_counted_in_tokens_and_whole_blocks() -> None:
    cache = _Cache(matched=8)
    counters = PrefixCounters(block_size=4)
    lookup = PrefixLookup()
    counters.install(cache, {"r": lookup}.get)
    cache.search_prefix_match("r", list(range(10)))
    cache.search_prefix_match("r", list(range(10)))
    assert (counters.queries, counters.hits, counters.reused_blocks) == (10, 8, 2)
    assert lookup.cached_tokens == 8
