from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.errors import Overloaded
from gateway.serving.admission import Admission
from gateway.serving.loop_lag import LoopLag
from gateway.serving.metrics import Metrics


def test_one_stall_moves_the_figure_a_fifth_and_a_sustained_lag_reaches_it() -> None:
    lag = LoopLag()
    lag.observe(0.5)
    assert lag.seconds == pytest.approx(0.1)
    for _ in range(30):
        lag.observe(0.5)
    assert lag.seconds == pytest.approx(0.5, rel=0.01)
    for _ in range(30):
        lag.observe(-0.001)  # a timer that fired early is no lag
    assert lag.seconds == pytest.approx(0.0, abs=0.001)


async def test_a_blocked_loop_shows_as_lag_and_an_idle_one_does_not() -> None:
    lag = LoopLag(interval=0.005)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        assert lag.seconds < 0.05
        for _ in range(10):
            time.sleep(0.2)  # the loop cannot run its timers meanwhile
            await asyncio.sleep(0)
        assert lag.seconds > 0.1
    finally:
        await lag.stop()


def test_admission_refuses_past_the_lag_bound_and_counts_it() -> None:
    registry = CollectorRegistry()
    rejections = Counter("r", "r", ("model_name", "reason"), registry=registry)
    lag = LoopLag()
    gate = Admission(10, 1000, 2, rejections, "m", loop_lag=lag, max_loop_lag=0.25)
    gate.admit(1).release()
    lag.seconds = 0.3
    with pytest.raises(Overloaded, match="event loop lag 300 ms") as caught:
        gate.admit(1)
    assert (caught.value.status_code, caught.value.retry_after) == (429, 2)
    labels = {"model_name": "m", "reason": "event_loop_lag"}
    assert registry.get_sample_value("r_total", labels) == 1
    assert gate.in_flight == 0
    lag.seconds = 0.2
    gate.admit(1)
    assert gate.in_flight == 1


def test_the_lag_is_exported() -> None:
    registry = CollectorRegistry()
    lag = LoopLag()
    Metrics(registry, "m", lag)
    lag.seconds = 0.125
    assert registry.get_sample_value("gateway_event_loop_lag_seconds") == 0.125
