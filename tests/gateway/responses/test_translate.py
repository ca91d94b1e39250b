"""Responses items as the chat completion they ask for."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.responses.protocol import ResponsesRequest
from gateway.responses.translate import chat_request

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", **fields})


def test_a_string_is_one_user_message_after_the_instructions() -> None:
    body = request(input="Hi.", instructions="Be brief.", max_output_tokens=5, stop=["."])
    chat = chat_request(body, body.input)
    assert [m.template_dict() for m in chat.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi."},
    ]
    assert (chat.requested_max_tokens, chat.stop) == (5, ["."])


def test_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    body = request(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "Sunny."},
            {"type": "function_call_output", "call_id": "c2", "output": "Rain."},
        ],
        tools=[TOOL],
    )
    messages = [m.template_dict() for m in chat_request(body, body.input).messages]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == "Checking."
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[2] == {"role": "tool", "content": "Sunny.", "tool_call_id": "c1"}


def test_a_call_alone_is_an_assistant_turn_of_calls() -> None:
    body = request(
        input=[
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        ]
    )
    (_, assistant) = chat_request(body, body.input).messages
    assert assistant.role == "assistant" and assistant.content is None
    assert assistant.tool_calls is not None and assistant.tool_calls[0].id == "c1"


def test_tools_choice_and_format_map_onto_chat() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = request(
        input="Hi.",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": True}},
    )
    chat = chat_request(body, body.input)
    assert chat.tools is not None
    assert chat.tools[0].template_dict() == {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}},
    }
    assert chat.tool_choice is not None and not isinstance(chat.tool_choice, str)
    assert chat.tool_choice.function.name == "get_weather"
    assert chat.parallel_tool_calls is False
    assert chat.response_format is not None
    assert chat.response_format.json_schema == {"name": "x", "schema": schema, "strict": True}


def test_a_chat_refusal_is_the_same_400() -> None:
    body = request(input="Hi.", temperature=1.5, top_p=0.5)
    assert chat_request(body, body.input).temperature == 1.5
    with pytest.raises(InvalidRequest):
        chat_request(request(input="Hi.", stop=[""] * 100), [])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "p"}}, "prompt"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 2}, "include"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"tools": [{"type": "file_search"}]}, "tools"),
    ],
)
def test_what_would_change_the_output_and_is_not_served_is_refused(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        request(input="Hi.", **fields).reject_unsupported()
    assert refused.value.param == param


def test_what_changes_nothing_is_accepted() -> None:
    body = request(
        input="Hi.",
        truncation="disabled",
        background=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
        user="u",
    )
    body.reject_unsupported()
