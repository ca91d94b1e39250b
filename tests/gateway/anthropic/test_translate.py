from __future__ import annotations

import pytest

from gateway.anthropic.protocol import CountTokensRequest, MessagesRequest
from gateway.anthropic.translate import chat_request
from gateway.errors import InvalidRequest


def test_a_conversation_with_a_tool_round_trip_becomes_chat_messages() -> None:
    body = MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 9,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"},
                        {"type": "text", "text": "Thanks."},
                    ],
                },
            ],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_k": 5,
            "stream": True,
        }
    )
    chat = chat_request(body)
    messages = [m.model_dump(exclude_none=True) for m in chat.messages]
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "Sunny", "tool_call_id": "t1"},
        {"role": "user", "content": "Thanks."},
    ]
    assert chat.tools is not None and chat.tools[0].function.parameters == {"type": "object"}
    assert chat.tool_choice is not None and chat.tool_choice.function.name == "w"  # type: ignore[union-attr]
    assert chat.parallel_tool_calls is False
    assert (chat.max_tokens, chat.temperature, chat.top_k, chat.stop, chat.stream) == (
        9,
        0.5,
        5,
        ["END"],
        True,
    )


@pytest.mark.parametrize(
    ("kind", "expected"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choices_map_onto_openais(kind: str, expected: str) -> None:
    body = CountTokensRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": kind},
        }
    )
    assert chat_request(body).tool_choice == expected


def test_a_named_tool_choice_without_a_name_is_a_400() -> None:
    body = CountTokensRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool"},
        }
    )
    with pytest.raises(InvalidRequest, match="needs a 'name'"):
        chat_request(body)
