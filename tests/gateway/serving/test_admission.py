from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.errors import Overloaded
from gateway.serving.admission import Admission


def admission(max_requests: int = 2, max_queued_tokens: int = 100) -> Admission:
    rejections = Counter("r", "r", ("model_name", "reason"), registry=CollectorRegistry())
    return Admission(max_requests, max_queued_tokens, 3, rejections, "m")


def test_requests_over_the_bound_get_429_with_retry_after() -> None:
    gate = admission(max_requests=2)
    first, _ = gate.admit(1), gate.admit(1)
    with pytest.raises(Overloaded) as caught:
        gate.admit(1)
    assert (caught.value.status_code, caught.value.retry_after) == (429, 3)
    first.release()
    gate.admit(1)


def test_queued_prompt_tokens_are_bounded_until_the_first_token() -> None:
    gate = admission(max_requests=10, max_queued_tokens=100)
    ticket = gate.admit(80)
    with pytest.raises(Overloaded, match="prompt tokens"):
        gate.admit(30)
    ticket.started()
    gate.admit(30)
    assert gate.queued_tokens == 30


def test_a_single_long_prompt_is_never_refused_for_its_length() -> None:
    gate = admission(max_queued_tokens=100)
    ticket = gate.admit(5000)
    assert (gate.in_flight, gate.queued_tokens) == (1, 5000)
    with pytest.raises(Overloaded, match="prompt tokens"):
        gate.admit(1)  # but nothing joins it until its prefill is done
    ticket.started()
    gate.admit(1)
    assert (gate.in_flight, gate.queued_tokens) == (2, 1)


def test_release_is_idempotent() -> None:
    gate = admission()
    ticket = gate.admit(10)
    ticket.release()
    ticket.release()
    ticket.started()
    assert (gate.in_flight, gate.queued_tokens) == (0, 0)


def test_check_refuses_what_admit_would_and_takes_nothing() -> None:
    gate = admission(max_requests=1)
    gate.check()
    ticket = gate.admit(5)
    with pytest.raises(Overloaded, match="concurrent requests"):
        gate.check()
    assert (gate.in_flight, gate.queued_tokens) == (1, 5)
    ticket.release()
    gate.check()
