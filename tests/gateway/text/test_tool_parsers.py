from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.text.tool_parsers import TOOL_PARSERS, ToolCallDelta, ToolCallParser

Call = tuple[str, Any]  # (name, arguments object)

FRAGMENTS = [  # tags, their pieces and JSON pieces of every format, so near-misses occur often
    "<tool_call>", "</tool_call>", "<tool", "[TOOL_CALLS]", "[ARGS]", "[TOOL", "<|python_tag|>",
    '{"name": "f", "arguments": {"a": 1}}', '{"name": "g", "parameters": {}}', '[{"name": "h", ',
    '"arguments": {"b": "}"}}]', "{", "}", "[", "]", '"', "\\", ";", ",", "f", "x y", "\n", " ",
]  # fmt: skip
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
arguments = st.dictionaries(st.text(max_size=5), json_values, max_size=4)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
calls = st.lists(st.tuples(names, arguments), max_size=3)
content = st.text("ab \n😀<[", max_size=12)  # no tag can form from these


@st.composite
def split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def run(parser: ToolCallParser, pieces: list[str]) -> tuple[list[str], list[ToolCallDelta]]:
    sent, deltas = [], []
    for piece in [*pieces, None]:
        text, more = parser.flush() if piece is None else parser.push(piece)
        sent.append(text)
        deltas += more
    return sent, deltas


def parse(format: str, pieces: list[str]) -> tuple[str, list[Call]]:
    """Final content, and the calls assembled from their deltas."""
    sent, deltas = run(TOOL_PARSERS[format](), pieces)
    assembled: dict[int, list[str]] = {}
    for delta in deltas:
        if delta.name is not None:
            assembled[delta.index] = [delta.name, ""]
        assembled[delta.index][1] += delta.arguments
    return "".join(sent), [(name, json.loads(args)) for name, args in assembled.values()]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(format: str, before: str, calls: list[Call], after: str) -> str:
    if format == "hermes":
        blocks = (
            f'<tool_call>\n{{"name": "{n}", "arguments": {dumps(a)}}}\n</tool_call>\n'
            for n, a in calls
        )
        return before + "".join(blocks) + after
    if format == "llama3_json":
        objects = (f'{{"name": "{n}", "parameters": {dumps(a)}}}' for n, a in calls)
        return "; ".join(objects) + after
    if format == "mistral":
        return (
            before + "[TOOL_CALLS]" + dumps([{"name": n, "arguments": a} for n, a in calls]) + after
        )
    return before + "".join(f"[TOOL_CALLS]{n}[ARGS]{dumps(a)}" for n, a in calls) + after


@pytest.mark.parametrize("format", TOOL_PARSERS)
@given(data=st.data(), text=st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join))
def test_any_split_gives_what_one_push_gives(format: str, data: st.DataObject, text: str) -> None:
    assert parse(format, data.draw(split(text))) == parse(format, [text])


@pytest.mark.parametrize("format", TOOL_PARSERS)
@given(data=st.data(), text=content)
def test_text_without_calls_is_content_unchanged(
    format: str, data: st.DataObject, text: str
) -> None:
    assert parse(format, data.draw(split(text))) == (text, [])


@pytest.mark.parametrize("format", ["hermes", "llama3_json", "mistral", "mistral_args"])
@given(data=st.data(), before=content, calls=calls.filter(bool), after=content)
def test_calls_and_content_are_recovered_however_split(
    format: str, data: st.DataObject, before: str, calls: list[Call], after: str
) -> None:
    if format == "llama3_json":
        before = ""  # only output that starts with "{" holds calls
    text = render(format, before, calls, after)
    expected = before.rstrip() + after.lstrip()
    assert parse(format.removesuffix("_args"), data.draw(split(text))) == (expected, calls)


@pytest.mark.parametrize("format", ["hermes", "llama3_json", "mistral", "mistral_args"])
@given(data=st.data(), calls=calls)
def test_a_call_is_sent_as_soon_as_its_text_is_complete(
    format: str, data: st.DataObject, calls: list[Call]
) -> None:
    parser = TOOL_PARSERS[format.removesuffix("_args")]()
    for piece in data.draw(split(render(format, "", calls, ""))):
        parser.push(piece)
    assert parser.calls == len(calls)


@pytest.mark.parametrize("format", TOOL_PARSERS)
def test_deltas_carry_an_id_and_name_and_count_the_calls(format: str) -> None:
    parser = TOOL_PARSERS[format]()
    text = render(format, "", [("f", {"x": 1}), ("g", {})], "")
    content, deltas = parser.push(text)
    deltas += parser.flush()[1]
    assert content == ""
    assert [(d.index, d.name, d.arguments) for d in deltas] == [
        (0, "f", '{"x": 1}'),
        (1, "g", "{}"),
    ]
    ids = [d.id for d in deltas]
    assert all(i is not None and i.startswith("call_") for i in ids)
    assert len(set(ids)) == 2
    assert parser.calls == 2


def test_hermes_holds_a_partial_tag_and_sends_content_first() -> None:
    parser = TOOL_PARSERS["hermes"]()
    assert parser.push("Checking the weather. <tool_") == ("Checking the weather.", [])
    content, deltas = parser.push('call>{"name": "w", "arguments": {"city": "Paris"}}</tool_call>')
    assert content == ""
    assert [(d.name, d.arguments) for d in deltas] == [("w", '{"city": "Paris"}')]


def test_hermes_a_near_miss_is_content() -> None:
    parser = TOOL_PARSERS["hermes"]()
    assert parser.push("a <tool_") == ("a", [])
    assert parser.push("box>") == (" <tool_box>", [])


MALFORMED = [
    "{not json}",
    '{"arguments": {}}',
    '{"name": "", "arguments": {}}',
    '{"name": "f", "arguments": [1]}',
    '{"name": "f", "arguments": {"x": NaN}}',
    '{"name": "f", "arguments": {"x": 1}, }',
    '{"name": "f" "arguments": {}}',
]


@pytest.mark.parametrize("body", MALFORMED)
def test_hermes_malformed_call_is_content_as_written(body: str) -> None:
    text = f"Hi <tool_call>{body}</tool_call> bye"
    assert parse("hermes", [text]) == (text, [])


def test_arguments_are_the_models_own_text() -> None:
    text = '<tool_call>{"name": "f", "arguments": {"n": 1e999, "m": 1.50}}</tool_call>'
    _, deltas = TOOL_PARSERS["hermes"]().push(text)
    assert [d.arguments for d in deltas] == ['{"n": 1e999, "m": 1.50}']


def test_hermes_arguments_as_a_json_string_are_accepted() -> None:
    text = '<tool_call>{"name": "f", "arguments": "{\\"x\\": [1, 2]}"}</tool_call>'
    assert parse("hermes", [text]) == ("", [("f", {"x": [1, 2]})])


def test_hermes_cut_off_call_with_complete_json_is_a_call() -> None:
    assert parse("hermes", ['<tool_call>\n{"name": "f", "arguments": {}}\n']) == ("", [("f", {})])


def test_hermes_call_cut_off_by_max_tokens_never_reaches_the_client() -> None:
    whole = '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>\n'
    text = "Sure.\n" + whole + '<tool_call>\n{"name": "f", "argu'
    assert parse("hermes", [text]) == ("Sure.", [("g", {})])  # the complete call stays


def test_llama3_python_tag_is_dropped() -> None:
    text = '<|python_tag|>{"name": "f", "parameters": {"q": "x"}}'
    assert parse("llama3_json", ["<|python", text[8:]]) == ("", [("f", {"q": "x"})])


def test_llama3_accepts_arguments_and_semicolons() -> None:
    text = '{"name": "f", "arguments": {}};{"name": "g", "parameters": {"a": 1}}'
    assert parse("llama3_json", [text]) == ("", [("f", {}), ("g", {"a": 1})])


def test_llama3_output_not_starting_with_a_brace_is_content() -> None:
    text = 'Call {"name": "f", "parameters": {}}'
    assert parse("llama3_json", [text]) == (text, [])


def test_llama3_json_that_is_not_a_call_is_content() -> None:
    assert parse("llama3_json", ['{"answer": 42}']) == ('{"answer": 42}', [])


def test_llama3_call_cut_off_by_max_tokens_never_reaches_the_client() -> None:
    text = '{"name": "g", "parameters": {}}; {"name": "f", "parameters": {"a"'
    assert parse("llama3_json", [text]) == ("", [("g", {})])


def test_llama3_braces_in_strings_do_not_end_a_call() -> None:
    text = '{"name": "f", "parameters": {"s": "}{\\"}"}}'
    assert parse("llama3_json", list(text)) == ("", [("f", {"s": '}{"}'})])


def test_mistral_array_with_content_before() -> None:
    text = 'Let me check.[TOOL_CALLS] [{"name": "f", "arguments": {}}, '
    text += '{"name": "g", "arguments": {"a": 1}}]'
    assert parse("mistral", [text]) == ("Let me check.", [("f", {}), ("g", {"a": 1})])


def test_mistral_args_form_streamed_character_by_character() -> None:
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]f[ARGS]{}'
    assert parse("mistral", list(text)) == ("", [("get_weather", {"city": "Paris"}), ("f", {})])


@pytest.mark.parametrize(
    "text",
    [
        "[TOOL_CALLS] sure",
        "[TOOL_CALLS]f[ARGS]oops",
        "[TOOL_CALLS]f [ARGS]{}",
        "[TOOL_CALLS][]",
        '[TOOL_CALLS] [{"name": "f"}]',
        "[TOOL_CALLS]",
    ],
)
def test_mistral_malformed_call_is_content(text: str) -> None:
    assert parse("mistral", [text]) == (text, [])


def test_mistral_array_cut_off_by_max_tokens_never_reaches_the_client() -> None:
    # The array is one unit: cut short, none of its calls is sent (nor its text).
    text = 'Sure.[TOOL_CALLS][{"name": "f", "arguments": {}}, {"na'
    assert parse("mistral", [text]) == ("Sure.", [])
