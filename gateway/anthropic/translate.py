"""A Messages request as the chat completion it asks for.

The chat completion's own model then validates it (sizes, surrogates, tool
schemas), so both APIs refuse the same inputs for the same reasons.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic

from gateway.anthropic.protocol import CountTokensRequest, MessagesRequest, TextBlock, ToolChoice
from gateway.anthropic.protocol import Message as AnthropicMessage
from gateway.errors import InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest


def chat_request(body: CountTokensRequest) -> ChatCompletionRequest:
    """The chat completion `body` asks for; a `MessagesRequest` brings its sampling too."""
    chat: dict[str, Any] = {"model": body.model, "messages": _messages(body)}
    if body.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                },
            }
            for tool in body.tools
        ]
        if body.tool_choice is not None:
            chat["tool_choice"] = _tool_choice(body.tool_choice)
            chat["parallel_tool_calls"] = not body.tool_choice.disable_parallel_tool_use
    if isinstance(body, MessagesRequest):
        chat |= {
            "max_tokens": body.max_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "top_k": body.top_k,
            "stop": body.stop_sequences,
            "stream": body.stream,
        }
    try:
        return ChatCompletionRequest.model_validate(chat)
    except pydantic.ValidationError as error:
        raise InvalidRequest.from_validation(error.errors()) from None


def _messages(body: CountTokensRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.system:
        messages.append({"role": "system", "content": _text(body.system)})
    for message in body.messages:
        messages += _message(message)
    return messages


def _message(message: AnthropicMessage) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: a user's tool results become tool messages
    (before its text), an assistant's tool_use blocks its tool calls."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    out: list[dict[str, Any]] = []
    texts, calls = [], []
    for block in message.content:
        match block.type:
            case "text":
                texts.append(block.text)
            case "tool_use":
                arguments = orjson.dumps(block.input).decode()
                call = {"name": block.name, "arguments": arguments}
                calls.append({"id": block.id, "type": "function", "function": call})
            case "tool_result":
                out.append(
                    {"role": "tool", "tool_call_id": block.tool_use_id, "content": block.text}
                )
    if texts or calls or not out:
        turn: dict[str, Any] = {"role": message.role, "content": "".join(texts)}
        if calls:
            turn["tool_calls"] = calls
        out.append(turn)
    return out


def _text(system: str | list[TextBlock]) -> str:
    return system if isinstance(system, str) else "".join(block.text for block in system)


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    match choice.type:
        case "any":
            return "required"
        case "tool":
            if not choice.name:
                raise InvalidRequest(
                    "tool_choice of type 'tool' needs a 'name'", param="tool_choice"
                )
            return {"type": "function", "function": {"name": choice.name}}
    return choice.type  # "auto" or "none"
