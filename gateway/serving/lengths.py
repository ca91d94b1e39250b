"""Dynamic max-length: fit each request into the context the engine reports.

The TensorRT-LLM executor silently shortens an output that does not fit and
throws on a prompt that is too long, so the gateway decides both up front, with
the wording that clients already parse (vLLM's).
"""

from __future__ import annotations

import dataclasses

from engines.base import EngineLimits, PromptTooLong
from gateway.config_errors import ConfigError
from gateway.errors import ContextLengthExceeded


def served_limits(engine: EngineLimits, max_model_len: int | None) -> EngineLimits:
    """The limits the gateway serves: the engine's, with the context capped at
    `max_model_len`; a cap past what the engine allows cannot be served."""
    if max_model_len is None:
        return engine
    if max_model_len > engine.max_seq_len:
        raise ConfigError(
            f"max_model_len (--max-model-len, GATEWAY_MAX_MODEL_LEN) is {max_model_len}, more "
            f"than the engine's maximum context length of {engine.max_seq_len} tokens; give at "
            f"most {engine.max_seq_len}, or leave it unset to serve the engine's"
        )
    return dataclasses.replace(
        engine,
        max_seq_len=max_model_len,
        max_input_len=min(engine.max_input_len, max_model_len),
    )


def fit_max_tokens(
    prompt_tokens: int, requested: int | None, limits: EngineLimits, *, strict: bool
) -> int:
    """The max_tokens to give the engine, or a 400 if the request cannot fit.

    A missing or too-large `requested` is clamped to the context that is left
    (the response then ends with finish_reason "length"); `strict` refuses it.
    """
    try:
        room = limits.output_room(prompt_tokens)
    except PromptTooLong as error:
        raise _too_long(error) from None
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


def _too_long(error: PromptTooLong) -> ContextLengthExceeded:
    if error.input_limit:
        return ContextLengthExceeded(
            f"This model's maximum input length is {error.limit} tokens. However, "
            f"your prompt contains {error.prompt_tokens} input tokens. "
            "Please reduce the length of the input prompt.",
            param="messages",
        )
    return ContextLengthExceeded(
        f"This model's maximum context length is {error.limit} tokens. However, "
        f"your prompt contains {error.prompt_tokens} input tokens, which exceeds this limit even "
        "without any output tokens. Please reduce the length of the input prompt.",
        param="messages",
    )
