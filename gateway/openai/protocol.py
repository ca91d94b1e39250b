"""OpenAI wire models for requests, and nothing else.

Policy: unknown fields are ignored (`extra="ignore"`), because clients send
vendor fields freely and a 400 for them breaks agents. Known OpenAI fields that
this gateway does not implement are declared so they can be rejected with a
clear 400 instead of being silently dropped. vLLM's sampling extensions
(top_k, repetition_penalty, min_tokens, ignore_eos, stop_token_ids,
include_stop_str_in_output) are accepted under their vLLM names.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.openai.tools import Tool, ToolChoice, choice_refusal, tool_refusal


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


class ToolCallFunction(_Wire):
    name: str
    arguments: str = "{}"


class ToolCall(_Wire):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str | None, BeforeValidator(_join_text_parts)] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool message answers this call
    reasoning_content: str | None = None  # accepted, and not sent back to the model

    @model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        # Only an assistant's turn may be calls alone. Not a ValueError: the 400 passes
        # through pydantic unwrapped, in plain words.
        if self.content is None and self.role != "assistant":
            raise InvalidRequest(f"a {self.role} message needs 'content'", param="messages")
        return self

    def template_dict(self) -> dict[str, Any]:
        """The message as chat templates take it (tool-call arguments as objects)."""
        message: dict[str, Any] = {"role": self.role, "content": self.content or ""}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _json_or_text(call.function.arguments),
                    },
                }
                for call in self.tool_calls
            ]
        return message


def _json_or_text(arguments: str) -> Any:
    """Templates write arguments with `tojson`: a JSON string would be encoded twice."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


class StreamOptions(_Wire):
    include_usage: bool = False
    continuous_usage_stats: bool = False  # usage in every chunk, not only at the end


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema", "regex", "grammar"] = "text"
    json_schema: dict[str, Any] | None = None  # {"name", "schema", "strict"}
    regex: str | None = None  # type "regex": a vLLM/SGLang-style extension
    grammar: str | None = None  # type "grammar": xgrammar EBNF


class _Body(_Wire):
    """A whole request body."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if _holds_lone_surrogate(data):
            raise ValueError("the body holds a lone UTF-16 surrogate, which is not valid Unicode")
        return data


# Engines take counts and token ids as 32-bit integers (TensorRT-LLM's SizeType32 and
# TokenIdType): past that, a field is a 400 that names it, never an engine's 500.
INT32_MAX = 2**31 - 1
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveCount = Annotated[int, Field(ge=1, le=INT32_MAX)]
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]


class SamplingFields(_Body):
    """What chat and text completions share: the model and how to sample it."""

    model: str
    max_tokens: PositiveCount | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Count | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None  # int64, as engines take
    n: PositiveCount = 1
    stop: str | list[str] | None = None
    stop_token_ids: list[TokenId] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: Count = 0
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    repetition_penalty: Annotated[float, Field(gt=0, le=2)] = 1.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None  # ignored unless stream: clients send it anyway
    user: str | None = None

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def continuous_usage(self) -> bool:
        options = self.stream_options
        return options is not None and options.include_usage and options.continuous_usage_stats


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: PositiveCount | None = None
    logprobs: bool = False
    top_logprobs: Count | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    chat_template_kwargs: dict[str, Any] | None = None  # e.g. {"enable_thinking": false}
    functions: list[dict[str, Any]] | None = None  # deprecated by OpenAI: refused

    # The refusals raised here are not ValueErrors: pydantic lets them through unwrapped, and
    # the 400 keeps OpenAI's param and code, which a validation error's rendering cannot carry.
    @field_validator("tools", mode="wrap")
    @classmethod
    def _tools_in_openai_words(cls, tools: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(tools)
        except ValidationError as error:
            if not isinstance(tools, list):
                raise  # pydantic's own 400 names `tools`
            raise tool_refusal(tools, error.errors()[0]) from None

    @field_validator("tool_choice", mode="wrap")
    @classmethod
    def _choice_in_openai_words(cls, choice: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(choice)
        except ValidationError:
            raise choice_refusal(choice) from None

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def top_logprobs_count(self) -> int | None:
        """None: no logprobs; else how many alternatives per token (0 or more)."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def reject_unsupported(self) -> None:
        if self.functions:
            raise UnsupportedParameter(
                "'functions' is deprecated and not supported; use 'tools'", param="functions"
            )
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs")


PromptIds = Annotated[list[TokenId], Field(min_length=1)]


class CompletionRequest(SamplingFields):
    prompt: (
        str
        | PromptIds
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[PromptIds], Field(min_length=1)]
    )
    logprobs: Count | None = None
    echo: bool = False
    suffix: str | None = None  # refused: no fill-in-the-middle
    best_of: PositiveCount | None = None  # refused unless equal to n

    # pydantic would name every member of the union, "prompt.str" first, whatever was sent.
    @field_validator("prompt", mode="wrap")
    @classmethod
    def _prompt_in_plain_words(cls, prompt: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(prompt, list) and not prompt:
            raise InvalidRequest("'prompt' must not be empty", param="prompt")
        try:
            return handler(prompt)
        except ValidationError:
            raise InvalidRequest(
                "'prompt' must be a string, a list of strings, a list of token ids "
                f"(0..{INT32_MAX}) or a list of such lists",
                param="prompt",
            ) from None

    @property
    def top_logprobs_count(self) -> int | None:
        return self.logprobs

    def reject_unsupported(self) -> None:
        if self.suffix:
            raise UnsupportedParameter("'suffix' is not supported", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise UnsupportedParameter("'best_of' other than 'n' is not supported", param="best_of")
        if self.echo and self.logprobs is not None:
            raise UnsupportedParameter(
                "'echo' with 'logprobs' (prompt logprobs) is not supported", param="echo"
            )

    def prompts(self) -> list[str | list[int]]:
        """The prompts, each text or token ids: a batch of n choices each."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if isinstance(prompt[0], int):
            return [[int(i) for i in prompt]]
        return list(prompt)


class TokenizeRequest(_Body):
    """`POST /tokenize`: a prompt, or messages through the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    add_special_tokens: bool = False  # prompts: True adds BOS where the tokenizer has one
    add_generation_prompt: bool = True  # messages


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[Annotated[TokenId, Field(strict=True)]]  # strict: `true` is no token id


CompletionBody = ChatCompletionRequest | CompletionRequest  # what a Runner runs
