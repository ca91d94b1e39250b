from __future__ import annotations

import pytest

from engines.base import EngineLimits
from gateway.config_errors import ConfigError
from gateway.errors import ContextLengthExceeded
from gateway.serving.lengths import fit_max_tokens, served_limits

LIMITS = EngineLimits(max_seq_len=100, max_input_len=90, max_batch_size=8)


@pytest.mark.parametrize(
    ("prompt", "requested", "expected"),
    [(10, None, 90), (10, 5, 5), (10, 90, 90), (10, 1000, 90), (90, None, 10)],
)
def test_clamps_to_the_context_left(prompt: int, requested: int | None, expected: int) -> None:
    assert fit_max_tokens(prompt, requested, LIMITS, strict=False) == expected


def test_prompt_over_the_context_uses_vllm_wording() -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        fit_max_tokens(100, None, LIMITS, strict=False)
    assert caught.value.message == (
        "This model's maximum context length is 100 tokens. However, your prompt contains "
        "100 input tokens, which exceeds this limit even without any output tokens. "
        "Please reduce the length of the input prompt."
    )
    assert caught.value.param == "messages"


def test_prompt_over_the_input_limit_is_refused() -> None:
    with pytest.raises(ContextLengthExceeded, match="maximum input length is 90 tokens"):
        fit_max_tokens(91, 1, LIMITS, strict=False)


def test_strict_mode_refuses_instead_of_clamping() -> None:
    assert fit_max_tokens(10, 90, LIMITS, strict=True) == 90
    with pytest.raises(ContextLengthExceeded, match=r"too large: 91.*\(91 > 100 - 10\)"):
        fit_max_tokens(10, 91, LIMITS, strict=True)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (None, LIMITS),
        (100, EngineLimits(max_seq_len=100, max_input_len=90, max_batch_size=8)),
        (50, EngineLimits(max_seq_len=50, max_input_len=50, max_batch_size=8)),
    ],
)
def test_max_model_len_caps_the_context_served(cap: int | None, expected: EngineLimits) -> None:
    assert served_limits(LIMITS, cap) == expected


def test_max_model_len_past_the_engines_cannot_be_served() -> None:
    with pytest.raises(ConfigError) as caught:
        served_limits(LIMITS, 101)
    assert str(caught.value) == (
        "max_model_len (--max-model-len, GATEWAY_MAX_MODEL_LEN) is 101, more than the engine's "
        "maximum context length of 100 tokens; give at most 100, or leave it unset to serve "
        "the engine's"
    )
