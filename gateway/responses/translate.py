"""A Responses request, with the conversation before it, as the chat completion it asks for.

The chat completion's own model then validates it (sizes, tool schemas, sampling
ranges), so both APIs refuse the same inputs for the same reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic

from gateway.errors import InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest
from gateway.responses.protocol import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    MessageItem,
    ResponsesRequest,
    TextFormat,
)


def chat_request(body: ResponsesRequest, items: Sequence[InputItem]) -> ChatCompletionRequest:
    """`items`: the whole conversation, earlier responses' items first."""
    chat: dict[str, Any] = {
        "model": body.model,
        "messages": messages(body.instructions, items),
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop,
        "response_format": _response_format(body.text.format),
    }
    if body.tools:
        chat["tools"] = [
            {
                "type": "function",
                # Only what the client sent: the chat template sees the tool as given.
                "function": tool.model_dump(exclude={"type"}, exclude_none=True),
            }
            for tool in body.tools
        ]
        choice = body.tool_choice
        chat["tool_choice"] = (
            choice
            if isinstance(choice, str)
            else {"type": "function", "function": {"name": choice.name}}
        )
        chat["parallel_tool_calls"] = body.parallel_tool_calls
    try:
        return ChatCompletionRequest.model_validate(chat)
    except pydantic.ValidationError as error:
        raise InvalidRequest.from_validation(error.errors()) from None


def messages(instructions: str | None, items: Sequence[InputItem]) -> list[dict[str, Any]]:
    """Chat messages: a call joins the assistant turn before it; reasoning is not replayed."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for item in items:
        match item:
            case MessageItem():
                out.append({"role": item.role, "content": item.text})
            case FunctionCallItem():
                if not out or out[-1]["role"] != "assistant":
                    out.append({"role": "assistant", "content": None})
                call = {"name": item.name, "arguments": item.arguments}
                entry = {"id": item.call_id, "type": "function", "function": call}
                out[-1].setdefault("tool_calls", []).append(entry)
            case FunctionCallOutputItem():
                out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text})
    return out


def _response_format(format_: TextFormat) -> dict[str, Any] | None:
    match format_.type:
        case "json_object":
            return {"type": "json_object"}
        case "json_schema":
            schema: dict[str, Any] = {"name": format_.name or "response", "schema": format_.schema_}
            if format_.strict is not None:
                schema["strict"] = format_.strict
            return {"type": "json_schema", "json_schema": schema}
    return None
