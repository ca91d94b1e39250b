"""A generate request as the text completion it asks for, with the ensemble's defaults.

The text completion's own model then validates it, so both APIs refuse the same
inputs for the same reasons. Where TensorRT-LLM's defaults differ from OpenAI's,
the ensemble's hold: no `top_k` and no `top_p` (both 0) decode greedily; stop words
stay in the output; `end_id` replaces the model's end token (-1: none at all).
"""

from __future__ import annotations

from typing import Any

import pydantic

from gateway.errors import InvalidRequest
from gateway.openai.protocol import CompletionRequest
from gateway.triton.protocol import GenerateRequest

_INT64 = 2**63


def completion_request(body: GenerateRequest, model: str, *, stream: bool) -> CompletionRequest:
    """The text completion of `body.text_input`, on `model` (the served name)."""
    fields: dict[str, Any] = {
        "model": model,
        "prompt": body.text_input,
        "max_tokens": body.max_tokens,
        "stream": stream,
        "stop": body.stop_strings or None,
        "include_stop_str_in_output": True,
        "temperature": body.temperature,
        "top_k": body.top_k,
        "top_p": body.top_p or None,  # 0: no top-p
        "repetition_penalty": body.repetition_penalty,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "min_tokens": body.min_new_tokens,
        "logprobs": 0 if body.return_log_probs else None,
    }
    if not body.top_k and not body.top_p:
        fields["temperature"] = 0.0  # TensorRT-LLM: neither top-k nor top-p is greedy
    seed = body.seed_value
    if seed is not None:  # uint64 as the engines' int64, the same 64 bits
        fields["seed"] = seed - 2**64 if seed >= _INT64 else seed
    if body.end_id is not None:
        fields["ignore_eos"] = True
        if body.end_id >= 0:
            fields["stop_token_ids"] = [body.end_id]
    try:
        return CompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except pydantic.ValidationError as error:
        raise InvalidRequest.from_validation(error.errors()) from None
