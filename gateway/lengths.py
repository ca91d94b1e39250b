"""Dynamic max-length: fit each request into the context the engine reports.

The TensorRT-LLM executor silently shortens an output that does not fit and
throws on a prompt that is too long, so the gateway decides both up front, with
the wording that clients already parse (vLLM's).
"""

from __future__ import annotations

from engines.base import EngineLimits
from gateway.errors import ContextLengthExceeded


def fit_max_tokens(
    prompt_tokens: int, requested: int | None, limits: EngineLimits, *, strict: bool
) -> int:
    """The max_tokens to give the engine, or a 400 if the request cannot fit.

    A missing or too-large `requested` is clamped to the context that is left
    (the response then ends with finish_reason "length"); `strict` refuses it.
    """
    if prompt_tokens >= limits.max_seq_len:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {limits.max_seq_len} tokens. However, "
            f"your prompt contains {prompt_tokens} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt.",
            param="messages",
        )
    if prompt_tokens > limits.max_input_len:
        raise ContextLengthExceeded(
            f"This model's maximum input length is {limits.max_input_len} tokens. However, "
            f"your prompt contains {prompt_tokens} input tokens. "
            "Please reduce the length of the input prompt.",
            param="messages",
        )
    room = limits.max_seq_len - prompt_tokens
    if requested is None:
        return room
    if requested > room and strict:
        raise ContextLengthExceeded(
            f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's "
            f"maximum context length is {limits.max_seq_len} tokens and your request has "
            f"{prompt_tokens} input tokens ({requested} > {limits.max_seq_len} - "
            f"{prompt_tokens}).",
            param="max_tokens",
        )
    return min(requested, room)
