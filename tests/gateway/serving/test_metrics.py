from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Histogram

from engines.base import FinishReason
from gateway.serving.metrics import LoopHistogram, LoopHistograms, Metrics

# Every finish reason a choice can end with: the engine's, a tool call's, a gone client's
# and a failure's; spelled out here rather than read from the module under test.
REASONS = ("stop", "length", "tool_calls", "abort", "error")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"model_name": "m", **labels})
    assert found is not None, f"{name} {labels} is not exported"
    return found


@pytest.mark.parametrize("reason", REASONS)
def test_a_finished_request_is_counted_once_under_its_reason(reason: str) -> None:
    registry = CollectorRegistry()
    began = time.perf_counter()
    request = Metrics(registry, "m").request(began)
    time.sleep(0.001)
    request.finished(FinishReason(reason), 3, 2, 0.25)
    wall = time.perf_counter() - began
    for other in REASONS:
        expected = 1 if other == reason else 0
        assert value(registry, "gateway_request_success_total", finished_reason=other) == expected
    assert value(registry, "gateway_prompt_tokens_total") == 3
    assert value(registry, "gateway_generation_tokens_total") == 2
    assert value(registry, "gateway_request_queue_time_seconds_count") == 1
    assert value(registry, "gateway_request_queue_time_seconds_sum") == 0.25
    assert value(registry, "gateway_e2e_request_latency_seconds_count") == 1
    assert 0 < value(registry, "gateway_e2e_request_latency_seconds_sum") <= wall


def test_time_to_first_token_once_then_an_inter_token_latency_per_delivery() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, "m")
    began = time.perf_counter()
    first, second = metrics.request(began), metrics.request(began)
    for _ in range(4):
        time.sleep(0.001)  # distinct readings, however coarse the clock
        first.delivered()
    second.delivered()
    wall = time.perf_counter() - began
    assert value(registry, "gateway_time_to_first_token_seconds_count") == 2
    assert 0 < value(registry, "gateway_time_to_first_token_seconds_sum") <= 2 * wall
    assert value(registry, "gateway_inter_token_latency_seconds_count") == 3
    assert 0 < value(registry, "gateway_inter_token_latency_seconds_sum") <= wall
    # Nothing is finished yet: no end-to-end latency, no tokens.
    assert value(registry, "gateway_e2e_request_latency_seconds_count") == 0
    assert value(registry, "gateway_generation_tokens_total") == 0


def test_a_request_cut_short_records_no_queue_time() -> None:
    """Only the engine's `Finished` knows the queue time: a stop string, an abort or an
    error must not add a zero that drags the histogram down."""
    registry = CollectorRegistry()
    Metrics(registry, "m").request(time.perf_counter()).finished(FinishReason.ABORT, 3, 1, None)
    assert value(registry, "gateway_request_queue_time_seconds_count") == 0
    assert value(registry, "gateway_e2e_request_latency_seconds_count") == 1


def test_loop_histograms_export_what_prometheus_clients_own_would() -> None:
    """Same observations, same buckets: the same samples (bounds are inclusive, `le`)."""
    bounds = (0.001, 0.01, 0.1, 1.0, 20.0)
    observed = [0.0, 0.001, 0.0011, 0.01, 0.5, 1.0, 19.99, 20.0, 20.01, 1e6]
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram("h", "doc", ("model_name",), registry=theirs_registry, buckets=bounds)
    ours = LoopHistogram("h", "doc", bounds)
    ours_registry.register(LoopHistograms([ours], "m"))
    for seconds in observed:
        theirs.labels("m").observe(seconds)
        ours.observe(seconds)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        [family] = registry.collect()
        kept = [s for s in family.samples if not s.name.endswith("_created")]
        return [(s.name, s.labels, s.value) for s in kept]

    assert samples(ours_registry) == samples(theirs_registry)
    assert value(ours_registry, "h_bucket", le="0.001") == 2
    assert value(ours_registry, "h_bucket", le="+Inf") == len(observed)
