from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import xgrammar
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from xgrammar.testing import _get_masked_tokens_from_bitmask, _is_grammar_accept_string

from gateway.errors import InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest
from gateway.openai.tools import Tool, ToolChoice
from gateway.serving.prompts import PromptRenderer
from gateway.serving.tool_prompts import (
    fallback_messages,
    system_prompt,
    tool_call_grammar,
    validate_tools,
)
from gateway.text.tool_parsers import TOOL_PARSERS
from tests.conftest import LiveServer

FORMATS = list(TOOL_PARSERS)
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
STATS = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 0},
        "xs": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
    },
}
PLOT = {
    "type": "object",
    "properties": {"at": {"$ref": "#/$defs/point"}, "label": {"type": ["string", "null"]}},
    "required": ["at"],
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
}


def tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


TOOLS = [tool("get_weather", WEATHER), tool("stats", STATS), tool("plot", PLOT), tool("now")]
TYPED_TOOLS = TypeAdapter(list[Tool]).validate_python(TOOLS)
TOOL_CHOICE: TypeAdapter[ToolChoice] = TypeAdapter(ToolChoice)
SCHEMAS: dict[str, dict[str, Any]] = {
    "get_weather": WEATHER,
    "stats": STATS,
    "plot": PLOT,
    "now": {"type": "object", "additionalProperties": False},
}
CHOICES: list[str | dict[str, Any]] = [
    "required",
    *({"type": "function", "function": {"name": name}} for name in SCHEMAS),
]


def render(format: str, calls: list[tuple[str, str]]) -> str:
    """Calls as the grammar writes them: json.dumps spacing, no whitespace between."""
    key = "parameters" if format == "llama3_json" else "arguments"
    objects = [f'{{"name": "{name}", "{key}": {arguments}}}' for name, arguments in calls]
    if format == "hermes":
        return "\n".join(f"<tool_call>\n{o}\n</tool_call>" for o in objects)
    if format == "llama3_json":
        return "; ".join(objects)
    return "[TOOL_CALLS][" + ", ".join(objects) + "]"


def accepts(format: str, choice: str | dict[str, Any], text: str) -> bool:
    grammar = tool_call_grammar(format, TYPED_TOOLS, TOOL_CHOICE.validate_python(choice))
    return _is_grammar_accept_string(grammar, text)


def parse(format: str, text: str) -> tuple[str, list[tuple[str, str]]]:
    parser = TOOL_PARSERS[format]()
    content, deltas = parser.push(text)
    more_content, more_deltas = parser.flush()
    return content + more_content, [(d.name or "", d.arguments) for d in deltas + more_deltas]


# Sampling from a grammar: one token per character, chosen at random among those it allows.
VOCAB = [chr(c) for c in range(32, 127)] + ["\n", "é", "😀", "</s>"]
STOP = len(VOCAB) - 1
CLOSING = [STOP, *(VOCAB.index(c) for c in '"}]')]  # preferred more and more, to end in time
TOKENIZER = xgrammar.TokenizerInfo(VOCAB, stop_token_ids=[STOP])


@functools.cache
def compiled(format: str, choice: str) -> xgrammar.CompiledGrammar:
    typed = TOOL_CHOICE.validate_python(json.loads(choice))
    grammar = tool_call_grammar(format, TYPED_TOOLS, typed)
    return xgrammar.GrammarCompiler(TOKENIZER).compile_grammar(grammar)


def sample(grammar: xgrammar.CompiledGrammar, rng: random.Random) -> str:
    matcher = xgrammar.GrammarMatcher(grammar)
    bitmask = xgrammar.allocate_token_bitmask(1, len(VOCAB))
    text: list[str] = []
    while not matcher.is_terminated():
        matcher.fill_next_token_bitmask(bitmask)
        rejected = set(_get_masked_tokens_from_bitmask(bitmask, len(VOCAB)))
        allowed = [token for token in range(len(VOCAB)) if token not in rejected]
        closing = [token for token in CLOSING if token in allowed]
        if closing and rng.random() < 0.2 + len(text) / 200:
            token = closing[0]
        else:
            token = rng.choice(allowed)
        assert matcher.accept_token(token)
        text += VOCAB[token] if token != STOP else ""
    return "".join(text)


@pytest.mark.parametrize("format", FORMATS)
@settings(max_examples=60, deadline=None)
@given(choice=st.sampled_from(CHOICES), rng=st.randoms(use_true_random=False))
def test_every_string_the_grammar_allows_parses_to_valid_calls(
    format: str, choice: str | dict[str, Any], rng: random.Random
) -> None:
    text = sample(compiled(format, json.dumps(choice)), rng)
    content, calls = parse(format, text)
    assert content == ""
    assert len(calls) >= 1 if choice == "required" else len(calls) == 1
    for name, arguments in calls:
        assert isinstance(choice, str) or name == choice["function"]["name"]
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.parametrize("format", FORMATS)
def test_required_accepts_one_or_more_valid_calls(format: str) -> None:
    weather = ("get_weather", '{"city": "Paris", "unit": "c"}')
    plot = ("plot", '{"at": {"x": 1.5}, "label": null}')
    assert accepts(format, "required", render(format, [weather]))
    assert accepts(format, "required", render(format, [weather, plot, ("now", "{}")]))
    assert parse(format, render(format, [weather, plot])) == ("", [weather, plot])


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    "call",
    [
        ("get_wether", '{"city": "Paris"}'),  # no such tool
        ("get_weather", "{}"),  # a required property missing
        ("get_weather", '{"city": 3}'),  # a property of the wrong type
        ("get_weather", '{"city": "Paris", "zip": "75001"}'),  # a property not in the schema
        ("stats", '{"n": -1}'),  # below the minimum
        ("plot", '{"at": {"x": "1"}}'),  # wrong inside a $ref
    ],
)
def test_invalid_calls_are_refused(format: str, call: tuple[str, str]) -> None:
    assert not accepts(format, "required", render(format, [call]))


@pytest.mark.parametrize("format", FORMATS)
def test_text_around_the_calls_is_refused(format: str) -> None:
    calls = render(format, [("now", "{}")])
    assert accepts(format, "required", calls)
    assert not accepts(format, "required", "Sure. " + calls)
    assert not accepts(format, "required", calls + " Done.")
    assert not accepts(format, "required", "")


@pytest.mark.parametrize("format", FORMATS)
def test_a_named_choice_allows_exactly_one_call_of_that_function(format: str) -> None:
    now = {"type": "function", "function": {"name": "now"}}
    assert accepts(format, now, render(format, [("now", "{}")]))
    assert not accepts(format, now, render(format, [("now", '{"a": 1}')]))  # takes no arguments
    assert not accepts(format, now, render(format, [("get_weather", '{"city": "P"}')]))
    assert not accepts(format, now, render(format, [("now", "{}"), ("now", "{}")]))


@pytest.mark.parametrize("format", FORMATS)
def test_required_without_parallel_calls_allows_exactly_one(format: str) -> None:
    grammar = tool_call_grammar(format, TYPED_TOOLS, "required", parallel_tool_calls=False)
    assert _is_grammar_accept_string(grammar, render(format, [("now", "{}")]))
    assert not _is_grammar_accept_string(grammar, render(format, [("now", "{}")] * 2))


def test_grammar_refuses_a_choice_that_forces_nothing() -> None:
    with pytest.raises(ValueError, match="forces no call"):
        tool_call_grammar("hermes", TYPED_TOOLS, "auto")


@pytest.mark.parametrize("format", FORMATS)
def test_system_prompt_lists_every_tool_schema(format: str) -> None:
    prompt = system_prompt(format, TYPED_TOOLS)
    for listed in TOOLS:
        indent = 4 if format == "llama3_json" else None
        assert json.dumps(listed, indent=indent) in prompt


def call(call_id: str, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            call("a", "get_weather", '{"city": "Paris"}'),  # as clients send them
            call("b", "get_weather", {"city": "Rome"}),  # as some templates take them
        ],
    },
    {"role": "tool", "tool_call_id": "a", "content": "sunny"},
    {"role": "tool", "tool_call_id": "b", "content": "rain"},
    {"role": "assistant", "content": "Sunny in Paris, rain in Rome."},
]


@pytest.mark.parametrize("format", FORMATS)
def test_fallback_messages_are_plain_and_calls_parse_back(format: str) -> None:
    plain = fallback_messages(CONVERSATION, TYPED_TOOLS, format)
    assert all(set(message) == {"role", "content"} for message in plain)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user", "assistant"]
    assert plain[0]["content"] == "Be brief.\n\n" + system_prompt(format, TYPED_TOOLS)
    content, calls = parse(format, plain[2]["content"])
    assert content == ("" if format == "llama3_json" else "Checking.")  # llama3: calls only
    assert calls == [("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Rome"}')]
    assert "sunny" in plain[3]["content"]
    assert "rain" in plain[3]["content"]


def test_fallback_tool_results_are_hermes_tool_responses_in_one_user_turn() -> None:
    plain = fallback_messages(CONVERSATION, TYPED_TOOLS, "hermes")
    responses = "<tool_response>\nsunny\n</tool_response>\n<tool_response>\nrain\n</tool_response>"
    assert plain[3] == {"role": "user", "content": responses}


def test_fallback_without_a_system_message_opens_with_the_instructions() -> None:
    plain = fallback_messages([{"role": "user", "content": "hi"}], TYPED_TOOLS, "hermes")
    assert plain == [
        {"role": "system", "content": system_prompt("hermes", TYPED_TOOLS)},
        {"role": "user", "content": "hi"},
    ]


def test_fallback_without_tools_only_rewrites_calls_and_results() -> None:
    plain = fallback_messages(CONVERSATION[1:], [], "mistral")
    assert plain[0] == {"role": "user", "content": "Weather in Paris and Rome?"}
    results = "[TOOL_RESULTS]sunny[/TOOL_RESULTS]\n[TOOL_RESULTS]rain[/TOOL_RESULTS]"
    assert plain[2] == {"role": "user", "content": results}


def request(tools: Any, choice: Any = None) -> ChatCompletionRequest:
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": "m", "messages": messages, "tools": tools, "tool_choice": choice}
    return ChatCompletionRequest.model_validate(body)


def validate(tools: Any, choice: Any) -> None:
    """Both halves of the checks: the request's models, then `validate_tools`."""
    body = request(tools, choice)
    validate_tools(body.tools, body.tool_choice)


def test_valid_tools_and_choices_pass() -> None:
    for choice in [None, "none", "auto", *CHOICES]:
        validate(TOOLS, choice)
    validate(None, "auto")
    validate([{"function": {"name": "f", "parameters": {}}}], None)  # type defaults


def function(**fields: Any) -> dict[str, Any]:
    return {"type": "function", "function": fields}


SCHEMA_ERROR = "tools[0].function.parameters"
NAME_ERROR = "tools[0].function.name"
NAMED_G = {"type": "function", "function": {"name": "g"}}


@pytest.mark.parametrize(
    ("tools", "choice", "param", "message"),
    [
        ([{"type": "web_search"}], None, "tools[0].type", "Invalid value: 'web_search'"),
        ([{"type": "function"}], None, "tools[0].function", "Missing required parameter"),
        ([function(description="x")], None, NAME_ERROR, "Missing required parameter"),
        ([function(name="get weather")], None, NAME_ERROR, "does not match pattern"),
        ([function(name="f" * 65)], None, NAME_ERROR, "string too long"),
        ([function(name="f"), function(name="f")], None, "tools[1].function.name", "more than"),
        ([function(name="f", parameters=[])], None, SCHEMA_ERROR, "Invalid schema for function"),
        ([function(name="f", parameters={"type": "string"})], None, SCHEMA_ERROR, '"string"'),
        (
            [function(name="f", parameters={"properties": 3})],
            None,
            SCHEMA_ERROR,
            "must be an object",
        ),
        (
            [function(name="f", parameters={"required": "a"})],
            None,
            SCHEMA_ERROR,
            "must be an array",
        ),
        ([function(name="f")], NAMED_G, "tool_choice.function.name", "no function named 'g'"),
        ([function(name="f")], {"type": "function"}, "tool_choice.function.name", "Missing"),
        ([function(name="f")], "sometimes", "tool_choice", "Invalid value: 'sometimes'"),
        ([], "required", "tool_choice", "only allowed when 'tools' are specified"),
        (None, NAMED_G, "tool_choice", "only allowed when 'tools' are specified"),
    ],
)
def test_invalid_tools_and_choices_are_refused(
    tools: list[dict[str, Any]] | None, choice: Any, param: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate(tools, choice)
    assert raised.value.param == param
    assert message in raised.value.message
    assert "/project/cpp" not in raised.value.message  # xgrammar's source location is cut


@pytest.mark.parametrize(
    ("tools", "choice", "param", "code"),
    [
        (["web_search"], None, "tools[0].type", "invalid_value"),
        ([{"type": None, "function": {"name": "f"}}], None, "tools[0].type", "invalid_value"),
        ([{"function": None}], None, "tools[0].function", "missing_required_parameter"),
        ([function(name=None)], None, NAME_ERROR, "missing_required_parameter"),
        ([function(name=3)], None, NAME_ERROR, "invalid_value"),
        ([function(name="f" * 65)], None, NAME_ERROR, "string_above_max_length"),
        ([function(name="f", parameters=[])], None, SCHEMA_ERROR, "invalid_function_parameters"),
        ([function(name="f", strict="x")], None, "tools[0].function.strict", "invalid_type"),
        (
            [function(name="f")],
            {"function": {"name": "f"}},
            "tool_choice.function.name",
            "missing_required_parameter",
        ),
        ([function(name="f")], 3, "tool_choice", "invalid_value"),
    ],
)
def test_refusals_of_the_shape_carry_openais_param_and_code(
    tools: list[Any], choice: Any, param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request(tools, choice)
    assert raised.value.param == param
    assert raised.value.code == code


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "invalid_value"),
        ({"tools": [function(name="a b")]}, NAME_ERROR, "invalid_value"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ],
)
def test_refusals_of_the_shape_reach_the_client_as_openais(
    synthetic_gateway: LiveServer, fields: dict[str, Any], param: str, code: str
) -> None:
    """Raised while FastAPI parses the body: not the generic 400 of a validation error."""
    response = post_chat(synthetic_gateway, fields)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_a_request_with_tools_is_served(synthetic_gateway: LiveServer) -> None:
    response = post_chat(synthetic_gateway, {"tools": TOOLS, "max_tokens": 1})
    assert response.status_code == 200, response.text


def post_chat(server: LiveServer, fields: dict[str, Any]) -> httpx.Response:
    body = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json={**body, **fields}, timeout=30)


SENT_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {**WEATHER, "properties": {"city": {"type": "string", "default": None}}},
            "strict": True,
        },
    },
    {"function": {"name": "now", "description": None}},  # no type, a null: as sent
]


@pytest.fixture(scope="module")
def tool_template_prompts(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PromptRenderer]:
    """SmolLM2's tokenizer with a template that writes each tool as JSON, as Qwen's does."""
    template = tmp_path_factory.mktemp("template") / "tools.jinja"
    template.write_text(
        "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    )
    prompts = PromptRenderer(model_dir, template)
    yield prompts
    prompts.close()


def test_tools_reach_the_template_as_the_client_sent_them(
    tool_template_prompts: PromptRenderer,
) -> None:
    typed = request(SENT_TOOLS).tools
    assert typed is not None
    sent = [tool.template_dict() for tool in typed]
    assert json.dumps(sent) == json.dumps(SENT_TOOLS)  # keys in the same order
    messages = [{"role": "user", "content": "hi"}]
    prompt = tool_template_prompts.render_sync(messages, tools=sent)
    assert prompt == tool_template_prompts.render_sync(messages, tools=SENT_TOOLS)
    assert '"name": "now", "description": null}}' in tool_template_prompts.decode(prompt)
