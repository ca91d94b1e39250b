from __future__ import annotations

import pytest

from engines.base import EngineLimits, EngineRequestError, PromptTooLong

LIMITS = EngineLimits(max_seq_len=100, max_input_len=90, max_batch_size=8)


@pytest.mark.parametrize(("prompt", "room"), [(1, 99), (89, 11), (90, 10)])
def test_output_room_is_the_context_left(prompt: int, room: int) -> None:
    assert LIMITS.output_room(prompt) == room


@pytest.mark.parametrize(
    ("limits", "prompt", "limit", "input_limit", "message"),
    [
        (LIMITS, 91, 90, True, "the prompt has 91 tokens; the engine takes at most 90"),
        (LIMITS, 100, 100, False, "the prompt has 100 tokens; the engine takes at most 99"),
        (EngineLimits(100, 99, 8), 100, 100, False, "the engine takes at most 99"),
    ],
)
def test_a_prompt_without_room_is_refused_as_the_clients_fault(
    limits: EngineLimits, prompt: int, limit: int, input_limit: bool, message: str
) -> None:
    with pytest.raises(PromptTooLong, match=message) as caught:
        limits.output_room(prompt)
    assert isinstance(caught.value, EngineRequestError)  # a 400, not an engine failure
    assert (caught.value.prompt_tokens, caught.value.limit) == (prompt, limit)
    assert caught.value.input_limit is input_limit
