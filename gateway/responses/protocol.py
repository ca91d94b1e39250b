"""OpenAI's Responses API request body (`POST /v1/responses`).

`input` is a string or a list of items: messages (text parts only), the
assistant's earlier `function_call`s, their `function_call_output`s, and
`reasoning` items sent back (kept in the history, not shown to the model). Any
other item is refused as a 400 by the discriminated union. Unknown fields are
ignored, as for chat completions; a known one that would change the output and
is not served (`background`, `conversation`, `prompt`, ...) is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from gateway.errors import UnsupportedParameter


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Wire):
    type: Literal["input_text", "output_text"]
    text: str


def _text(content: str | list[TextPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


class MessageItem(_Wire):
    type: Literal["message"] = "message"  # "easy" input messages leave it out
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[TextPart]
    id: str | None = None

    @property
    def text(self) -> str:
        return _text(self.content)


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]

    @property
    def text(self) -> str:
        return _text(self.output)


class ReasoningItem(_Wire):
    type: Literal["reasoning"]
    id: str | None = None


def _item_type(item: Any) -> str | None:
    """The item's tag; None (a 400 naming the item) for what is no item at all."""
    if isinstance(item, dict):
        kind = item.get("type", "message")
        return kind if isinstance(kind, str) else None
    return getattr(item, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]


def _as_items(value: object) -> object:
    return (
        [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else value
    )


class FunctionTool(_Wire):
    type: str  # only "function" is served: checked with a clear message
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Wire):
    type: Literal["function"]
    name: str


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Wire):
    format: TextFormat = Field(default_factory=TextFormat)


class ReasoningConfig(_Wire):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(_Wire):
    model: str
    # A string is one user message: a list from here on, so errors name the item.
    input: Annotated[list[InputItem], BeforeValidator(_as_items)]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedFunction = "auto"
    parallel_tool_calls: bool = True
    text: TextConfig = Field(default_factory=TextConfig)
    max_output_tokens: Annotated[int, Field(ge=1, lt=2**31)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None  # not OpenAI's: as in chat completions
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
            Field(max_length=16),
        ]
        | None
    ) = None  # OpenAI's bounds
    reasoning: ReasoningConfig | None = None  # accepted: a model thinks as its template makes it
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None
    user: str | None = None

    def reject_unsupported(self) -> None:
        """What would change the output, and is not served, is refused rather than ignored."""
        for name in ("background", "conversation", "prompt", "max_tool_calls"):
            if getattr(self, name) not in (None, False):
                raise UnsupportedParameter(f"'{name}' is not supported", param=name)
        if self.truncation == "auto":
            raise UnsupportedParameter(
                "'truncation': 'auto' is not supported; a conversation that does not fit "
                "the context is refused",
                param="truncation",
            )
        if self.top_logprobs or "message.output_text.logprobs" in (self.include or []):
            raise UnsupportedParameter(
                "logprobs are not supported on /v1/responses", param="include"
            )
        for tool in self.tools or []:
            if tool.type != "function":
                raise UnsupportedParameter(
                    f"only function tools are served, not '{tool.type}'", param="tools"
                )
