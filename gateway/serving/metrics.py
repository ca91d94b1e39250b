"""Prometheus metrics: vLLM's names and meanings under the `gateway_` prefix.

Request-path metrics are recorded once per engine delivery (a step's tokens),
never per token; engine gauges are read from `engine.stats()` at scrape time by
`EngineCollector`, so an idle gateway does no metrics work at all.

    gateway_request_success_total{finished_reason}   stop | length | tool_calls | abort | error
    gateway_http_requests_total{route,status}        every response, by status
    gateway_admission_rejections_total{reason}       requests | prompt_tokens | event_loop_lag
    gateway_event_loop_lag_seconds                   the event loop's smoothed lag
    gateway_time_to_first_token_seconds              arrival to first token
    gateway_inter_token_latency_seconds              between engine deliveries
    gateway_e2e_request_latency_seconds              arrival to last token
    gateway_request_queue_time_seconds               waiting in the engine
    gateway_prompt_tokens_total, gateway_generation_tokens_total
    gateway_num_requests_running, gateway_num_requests_waiting
    gateway_kv_cache_usage_perc                      0..1
    gateway_engine_step_seconds                      the latest step's latency
    gateway_prefix_cache_queries_total, gateway_prefix_cache_hits_total  (tokens)
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engines.base import EngineStats, FinishReason
from gateway.serving.loop_lag import LoopLag

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)  # fmt: skip
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
                0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0)  # fmt: skip


class Metrics:
    def __init__(
        self, registry: CollectorRegistry, model_name: str, loop_lag: LoopLag | None = None
    ) -> None:
        self.registry = registry
        if loop_lag is not None:
            _export_loop_lag(registry, loop_lag)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ("model_name", *labels), registry=registry)

        success = counter("gateway_request_success", "Finished requests.", "finished_reason")
        # Every reason's child up front: no lookup per request, and no reason without one.
        self.success = {r: success.labels(model_name, r.value) for r in FinishReason}
        self.admission_rejections = counter(
            "gateway_admission_rejections", "Requests refused by admission control.", "reason"
        )
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP responses.", ("route", "status"), registry=registry
        )
        self.prompt_tokens = counter("gateway_prompt_tokens", "Prefill tokens.").labels(model_name)
        self.generation_tokens = counter("gateway_generation_tokens", "Generated tokens.").labels(
            model_name
        )
        self.ttft = LoopHistogram(
            "gateway_time_to_first_token_seconds", "Time to first token.", _TTFT_BUCKETS
        )
        self.itl = LoopHistogram(
            "gateway_inter_token_latency_seconds", "Time between deliveries.", _ITL_BUCKETS
        )
        self.e2e = LoopHistogram(
            "gateway_e2e_request_latency_seconds", "Arrival to last token.", _E2E_BUCKETS
        )
        self.queue_time = LoopHistogram(
            "gateway_request_queue_time_seconds", "Time waiting in the engine.", _E2E_BUCKETS
        )
        histograms = (self.ttft, self.itl, self.e2e, self.queue_time)
        registry.register(LoopHistograms(histograms, model_name))

    def request(self, arrival: float) -> RequestMetrics:
        """`arrival`: the request's `time.perf_counter()` when it came in."""
        return RequestMetrics(self, arrival)


def _export_loop_lag(registry: CollectorRegistry, loop_lag: LoopLag) -> None:
    """The lag, read at scrape time: nothing to update on the loop itself."""
    Gauge(
        "gateway_event_loop_lag_seconds",
        "How late the event loop runs what is due, smoothed.",
        registry=registry,
    ).set_function(lambda: loop_lag.seconds)


class RequestMetrics:
    """One engine request's timings (a choice's, with n > 1), recorded per delivery."""

    __slots__ = ("_arrival", "_last", "_metrics")

    def __init__(self, metrics: Metrics, arrival: float) -> None:
        self._metrics = metrics
        self._arrival = arrival
        self._last = 0.0

    def delivered(self) -> None:
        now = time.perf_counter()
        if self._last:
            self._metrics.itl.observe(now - self._last)
        else:
            self._metrics.ttft.observe(now - self._arrival)
        self._last = now

    def finished(
        self,
        reason: FinishReason,
        prompt_tokens: int,
        completion_tokens: int,
        queue_seconds: float | None,
    ) -> None:
        metrics = self._metrics
        metrics.success[reason].inc()
        metrics.prompt_tokens.inc(prompt_tokens)
        metrics.generation_tokens.inc(completion_tokens)
        if queue_seconds is not None:
            metrics.queue_time.observe(queue_seconds)
        metrics.e2e.observe(time.perf_counter() - self._arrival)


class LoopHistogram:
    """A histogram observed from the event loop's thread alone, exported at scrape time.

    prometheus_client's `Histogram` takes a lock for its sum and again for the bucket
    (about 2 us an observation against 0.3 us here), and a stream observes one per
    delivery. Scrapes run on the same loop (`GET /metrics`), so nothing needs a lock.
    """

    __slots__ = ("_bounds", "counts", "doc", "name", "sum")

    def __init__(self, name: str, doc: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self._bounds = (*bounds, math.inf)
        self.counts = [0] * len(self._bounds)  # per bucket, not cumulative
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1  # le: the first bound >= value
        self.sum += value

    def family(self, model_name: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=("model_name",))
        cumulative = itertools.accumulate(self.counts)
        les = ("+Inf" if bound == math.inf else repr(bound) for bound in self._bounds)
        buckets = list(zip(les, cumulative, strict=True))
        family.add_metric((model_name,), buckets, self.sum)
        return family


class LoopHistograms(Collector):
    """Exports loop histograms, each under its name with the model's label."""

    def __init__(self, histograms: Sequence[LoopHistogram], model_name: str) -> None:
        self._histograms = histograms
        self._model_name = model_name

    def collect(self) -> Iterable[Metric]:
        return [histogram.family(self._model_name) for histogram in self._histograms]


class EngineCollector(Collector):
    """Engine gauges and counters, read from `stats()` at scrape time."""

    def __init__(self, stats: Callable[[], EngineStats], model_name: str) -> None:
        self._stats = stats
        self._model_name = model_name

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        usage = stats.kv_blocks_used / stats.kv_blocks_total if stats.kv_blocks_total else 0.0
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        for family, name, doc, value in (
            (gauge, "num_requests_running", "Requests in the engine's batch.", stats.running),
            (gauge, "num_requests_waiting", "Requests queued in the engine.", stats.waiting),
            (gauge, "kv_cache_usage_perc", "KV-cache blocks in use, 0..1.", usage),
            (gauge, "engine_step_seconds", "The latest engine step's latency.",
             stats.step_seconds),
            (counter, "prefix_cache_queries", "Prompt tokens looked up.",
             stats.prefix_cache_queries),
            (counter, "prefix_cache_hits", "Prompt tokens found cached.",
             stats.prefix_cache_hits),
        ):  # fmt: skip
            metric = family(f"gateway_{name}", doc, labels=("model_name",))
            metric.add_metric((self._model_name,), value)
            yield metric

    def describe(self) -> Iterable[Metric]:
        return []
