"""Tools in prompts, grammars that force tool calls, and the checks on both.

Chat templates written for tool use (Qwen, Llama 3.1+, Mistral) render
`tools`, an assistant's `tool_calls` and `tool` messages themselves. For one
that does not (SmolLM2's ChatML), `fallback_messages` writes them as plain text
in the tool parser's format, so that the parser reads back what the prompt
taught:

    format       instructions               earlier calls         tool results (user turns)
    hermes       Qwen 2.5's <tools> block   <tool_call> blocks    <tool_response> blocks
    llama3_json  Llama 3.1's JSON prompt    {...}; {...}          <tool_response> blocks
    mistral      [AVAILABLE_TOOLS] block    [TOOL_CALLS][...]     [TOOL_RESULTS] blocks

`tool_call_grammar` writes a call's JSON the way `json.dumps` does, with ", "
and ": " (how these models saw calls in training), so that the forced output
is text the model finds likely. Arguments follow the tool's `parameters` in
xgrammar's strict mode: properties the schema does not name are not allowed
unless it says `additionalProperties`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from xgrammar import Grammar

from gateway.errors import InvalidRequest
from gateway.openai.tools import FunctionDefinition, NamedToolChoice, Tool, ToolChoice

_XGRAMMAR_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")  # "[01:05:04] /project/cpp/x.cc:83: "


def grammar_problem(error: BaseException) -> str:
    """xgrammar's complaint without the C++ log line's time stamp and source path."""
    return _XGRAMMAR_PREFIX.sub("", str(error)).strip().rstrip(".")


@dataclass(frozen=True, slots=True)
class _Format:
    """How a format writes calls: head, calls (open, JSON, close) joined by separator, tail."""

    instructions: str  # with {tools} where the tools' JSON goes
    separator: str
    arguments: str = "arguments"  # the key of a call's arguments
    head: str = ""
    open: str = ""
    close: str = ""
    tail: str = ""
    result_open: str = "<tool_response>\n"
    result_close: str = "\n</tool_response>"
    tool_separator: str = "\n"
    tool_indent: int | None = None
    content_with_calls: bool = True  # False: a message is calls or text, never both


_HERMES_INSTRUCTIONS = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

_LLAMA3_INSTRUCTIONS = """Given the following functions, please respond with a JSON for a \
function call with its proper arguments that best answers the given prompt.

Respond in the format {{"name": function name, "parameters": dictionary of argument name \
and its value}}. Do not use variables.

{tools}"""

_MISTRAL_INSTRUCTIONS = """[AVAILABLE_TOOLS][{tools}][/AVAILABLE_TOOLS]

To call functions, answer with [TOOL_CALLS] followed by a JSON array of calls, each \
{{"name": function name, "arguments": dictionary of argument name and its value}}."""

_FORMATS = {
    "hermes": _Format(_HERMES_INSTRUCTIONS, "\n", open="<tool_call>\n", close="\n</tool_call>"),
    "llama3_json": _Format(
        _LLAMA3_INSTRUCTIONS,
        "; ",
        arguments="parameters",
        tool_separator="\n\n",
        tool_indent=4,
        content_with_calls=False,
    ),
    "mistral": _Format(
        _MISTRAL_INSTRUCTIONS,
        ", ",
        head="[TOOL_CALLS][",
        tail="]",
        result_open="[TOOL_RESULTS]",
        result_close="[/TOOL_RESULTS]",
        tool_separator=", ",
    ),
}


def system_prompt(format: str, tools: list[Tool]) -> str:
    """Tool-use instructions listing `tools`, for a template that does not render them."""
    style = _FORMATS[format]
    listed = (
        json.dumps(tool.template_dict(), ensure_ascii=False, indent=style.tool_indent)
        for tool in tools
    )
    return style.instructions.format(tools=style.tool_separator.join(listed))


def fallback_messages(
    messages: list[dict[str, Any]], tools: list[Tool], format: str
) -> list[dict[str, Any]]:
    """`messages` as plain role/content dicts, with tools, calls and results written as text.

    The instructions join the first system message, or open the conversation in
    a new one; consecutive tool results share one user turn, as Qwen's template does.
    Text beside llama3 calls is dropped, as Llama's template does: its calls are
    the whole message.
    """
    style = _FORMATS[format]
    plain: list[dict[str, Any]] = []
    previous = None
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool":
            result = style.result_open + content + style.result_close
            if previous == "tool":
                plain[-1]["content"] += "\n" + result
            else:
                plain.append({"role": "user", "content": result})
        elif message.get("tool_calls"):
            calls = _calls_text(style, message["tool_calls"])
            if content and style.content_with_calls:
                calls = f"{content}\n{calls}"
            plain.append({"role": role, "content": calls})
        else:
            plain.append({"role": role, "content": content})
        previous = role
    if tools:
        instructions = system_prompt(format, tools)
        if plain and plain[0]["role"] in ("system", "developer"):
            plain[0]["content"] = f"{plain[0]['content']}\n\n{instructions}".lstrip()
        else:
            plain.insert(0, {"role": "system", "content": instructions})
    return plain


def _calls_text(style: _Format, tool_calls: list[dict[str, Any]]) -> str:
    """An assistant's earlier calls as the model would have written them."""
    calls = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        head = json.dumps({"name": function.get("name", "")}, ensure_ascii=False)[:-1]
        calls.append(f'{style.open}{head}, "{style.arguments}": {arguments}}}{style.close}')
    return style.head + style.separator.join(calls) + style.tail


def tool_call_grammar(
    format: str, tools: list[Tool], choice: ToolChoice, *, parallel_tool_calls: bool = True
) -> str:
    """xgrammar EBNF for output that is only tool calls, in `format`.

    `choice` "required": one or more calls (exactly one without
    `parallel_tool_calls`) of any of `tools`; a named function choice: exactly
    one call of it. Each call's arguments follow its tool's `parameters`. Call
    `validate_tools` first: this assumes what it checks.
    """
    style = _FORMATS[format]
    if choice == "required":
        chosen = tools
    elif isinstance(choice, NamedToolChoice):
        chosen = [tool for tool in tools if tool.function.name == choice.function.name]
    else:
        raise ValueError(f"tool_choice {choice!r} forces no call")
    call = Grammar.concat(
        *_literal(style.open),
        Grammar.union(*(_call_grammar(style, tool.function) for tool in chosen)),
        *_literal(style.close),
    )
    if choice == "required" and parallel_tool_calls:
        separator = json.dumps(style.separator)
        call = Grammar.from_ebnf(
            f"{call}\ntool_calls ::= root ({separator} root)*\n", root_rule_name="tool_calls"
        )
    return str(Grammar.concat(*_literal(style.head), call, *_literal(style.tail)))


def _call_grammar(style: _Format, function: FunctionDefinition) -> Grammar:
    """`{"name": "f", "arguments": {...}}` with the arguments following the parameters."""
    head = json.dumps({"name": function.name})[:-1] + f', "{style.arguments}": '
    return Grammar.concat(
        *_literal(head),
        Grammar.from_json_schema(_parameters(function), any_whitespace=False, strict_mode=True),
        *_literal("}"),
    )


def _literal(text: str) -> list[Grammar]:
    """A grammar for exactly `text`, or none for the empty string (EBNF has no "")."""
    return [Grammar.from_ebnf(f"root ::= {json.dumps(text)}")] if text else []


def _parameters(function: FunctionDefinition) -> str:
    """The function's parameters as schema text: arguments are always an object, and
    a function without parameters takes none (`{}` only), as OpenAI reads it."""
    return json.dumps({"type": "object", **(function.parameters or {"properties": {}})})


def validate_tools(tools: list[Tool] | None, tool_choice: ToolChoice | None) -> None:
    """Raise `InvalidRequest`, with OpenAI's wording, for tools the gateway could not
    prompt, parse or force. Their shape is checked as the request is parsed
    (`gateway.openai.protocol`): what is left needs the tools together or xgrammar."""
    names: set[str] = set()
    for index, tool in enumerate(tools or []):
        name = tool.function.name
        _validate_parameters(f"tools[{index}].function.parameters", tool.function)
        if name in names:
            raise InvalidRequest(
                f"Invalid 'tools': function name '{name}' is used more than once.",
                param=f"tools[{index}].function.name",
                code="invalid_value",
            )
        names.add(name)
    _validate_choice(tool_choice, names)


def _validate_parameters(where: str, function: FunctionDefinition) -> None:
    parameters = function.parameters
    problem = None
    if parameters and parameters.get("type", "object") != "object":
        got = parameters["type"]
        problem = f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'"
    elif parameters:
        problem = _schema_problem(_parameters(function))
    if problem is not None:
        raise InvalidRequest(
            f"Invalid schema for function '{function.name}': {problem}.",
            param=where,
            code="invalid_function_parameters",
        )


@functools.lru_cache(maxsize=256)
def _schema_problem(schema: str) -> str | None:
    """Why xgrammar cannot build a grammar from `schema`, or None: agents resend the same tools."""
    try:
        Grammar.from_json_schema(schema, any_whitespace=False, strict_mode=True)
    except RuntimeError as error:
        return grammar_problem(error)
    return None


def _validate_choice(choice: ToolChoice | None, names: set[str]) -> None:
    if choice is None or choice in ("none", "auto"):
        return
    if not names:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise InvalidRequest(
            f"Invalid 'tool_choice': no function named '{choice.function.name}' in 'tools'.",
            param="tool_choice.function.name",
            code="invalid_value",
        )
