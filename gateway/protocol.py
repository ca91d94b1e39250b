"""OpenAI wire models for requests, and nothing else.

Policy: unknown fields are ignored (`extra="ignore"`), because clients send
vendor fields freely and a 400 for them breaks agents. Known OpenAI fields that
this gateway does not implement yet are declared so they can be rejected with a
clear 400 instead of being silently dropped.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gateway.errors import UnsupportedParameter


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _join_text_parts(value: object) -> object:
    """Content parts as one string; only text parts exist for a text model."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"only text content parts are supported, got {kind!r}")
        if not isinstance(part.get("text"), str):
            raise ValueError("a text content part needs a string 'text'")
        texts.append(part["text"])
    return "".join(texts)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(data: object) -> bool:
    """Any string, key or value, with a lone UTF-16 surrogate: JSON escapes can spell one
    ("\\ud800"), and neither tokenizers nor JSON encoders take it. Iterative: deep is fine."""
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value
    return False


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str | None, BeforeValidator(_join_text_parts)] = None
    name: str | None = None

    def template_dict(self) -> dict[str, str]:
        message = {"role": self.role, "content": self.content or ""}
        if self.name is not None:
            message["name"] = self.name
        return message


class StreamOptions(_Wire):
    include_usage: bool = False


class ChatCompletionRequest(_Wire):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None  # vLLM-style extension
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    # Declared so that they are refused clearly until they are implemented.
    n: Annotated[int, Field(ge=1)] = 1
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if _holds_lone_surrogate(data):
            raise ValueError("the body holds a lone UTF-16 surrogate, which is not valid Unicode")
        return data

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def reject_unsupported(self) -> None:
        """Raise for parameters that would change the output but are not implemented."""
        refused = {
            "n": self.n != 1,
            "logprobs": bool(self.logprobs),
            "top_logprobs": bool(self.top_logprobs),
            "tools": bool(self.tools),
            "tool_choice": self.tool_choice not in (None, "none"),
            "functions": bool(self.functions),
            "response_format": (self.response_format or {}).get("type", "text") != "text",
            "presence_penalty": bool(self.presence_penalty),
            "frequency_penalty": bool(self.frequency_penalty),
            "logit_bias": bool(self.logit_bias),
        }
        for param, is_set in refused.items():
            if is_set:
                raise UnsupportedParameter(
                    f"'{param}' is not supported by this server yet", param=param
                )
