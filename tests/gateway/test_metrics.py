from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics import FINISH_REASONS, Metrics


@pytest.mark.parametrize("reason", FINISH_REASONS)
def test_every_finish_reason_a_choice_can_have_is_counted(reason: str) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, "m")
    metrics.request(time.perf_counter()).finished(reason, 3, 2, 0.0)
    labels = {"model_name": "m", "finished_reason": reason}
    assert registry.get_sample_value("gateway_request_success_total", labels) == 1


def test_tool_calls_is_a_finish_reason() -> None:
    assert "tool_calls" in FINISH_REASONS
