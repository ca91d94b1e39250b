"""Tools on the chat wire: function definitions, `tool_choice`, and OpenAI's own 400s
for a malformed one (its wording, parameter paths and codes kept)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import ErrorDetails

from gateway.errors import InvalidRequest


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionDefinition(_Wire):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]+$", max_length=64)]  # OpenAI's limits
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema: tool_prompts checks it compiles
    strict: bool | None = None  # accepted: forced calls follow the schema strictly anyway


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDefinition

    def template_dict(self) -> dict[str, Any]:
        """The tool as chat templates take it: the fields the client sent, and no others."""
        return self.model_dump(exclude_unset=True)


class ToolChoiceFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


def tool_refusal(tools: list[Any], error: ErrorDetails) -> InvalidRequest:
    """OpenAI's 400 for pydantic's first complaint about one of `tools`."""
    index, *field = error["loc"]
    where = f"tools[{index}]" + "".join(f".{part}" for part in field)
    value = error["input"]
    if field in ([], ["type"]):  # not an object, or a tool of another type
        return InvalidRequest(
            f"Invalid value: {value!r}. Supported values are: 'function'.",
            param=f"tools[{index}].type",
            code="invalid_value",
        )
    if field == ["function"] or error["type"] == "missing" or value is None:
        return _missing(where)
    if field[-1] == "parameters":
        name = tools[int(index)]["function"]["name"]  # a string: the name is checked first
        return InvalidRequest(
            f"Invalid schema for function '{name}': parameters must be a JSON Schema object.",
            param=where,
            code="invalid_function_parameters",
        )
    if error["type"] == "string_too_long":
        return InvalidRequest(
            f"Invalid '{where}': string too long. Expected a string with maximum length 64, "
            f"but got a string with length {len(value)} instead.",
            param=where,
            code="string_above_max_length",
        )
    if field[-1] == "name":
        return InvalidRequest(
            f"Invalid '{where}': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param=where,
            code="invalid_value",
        )
    message = f"Invalid type for '{where}': {error['msg']}."  # description, strict
    return InvalidRequest(message, param=where, code="invalid_type")


def choice_refusal(choice: object) -> InvalidRequest:
    """OpenAI's 400 for a `tool_choice` that is neither a mode nor a named function."""
    if isinstance(choice, dict):
        return _missing("tool_choice.function.name")
    return InvalidRequest(
        f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
        param="tool_choice",
        code="invalid_value",
    )


def _missing(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter"
    )
