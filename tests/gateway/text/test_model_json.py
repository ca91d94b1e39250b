from __future__ import annotations

from gateway.text.model_json import JsonEnd, members, parse_call


def test_the_end_is_found_as_text_grows_and_brackets_in_strings_do_not_count() -> None:
    end = JsonEnd()
    assert end.feed(' {"s": "}{') is None
    assert end.feed(' {"s": "}{\\"}", "t": [1]} tail') == len(' {"s": "}{\\"}", "t": [1]}')
    assert end.viable


def test_text_before_the_bracket_is_not_a_json_value() -> None:
    end = JsonEnd()
    assert end.feed("x {}") is None
    assert not end.viable


def test_members_keep_each_values_own_text() -> None:
    assert members('{"a": 1e999, "b": [1, 2]}', "{", "}") == [
        ("a", float("inf"), "1e999"),
        ("b", [1, 2], "[1, 2]"),
    ]
    assert members("[NaN]", "[", "]") is None  # strict JSON
    assert members('{"a": 1} trailing', "{", "}") is None


def test_a_call_needs_a_name_and_an_arguments_object() -> None:
    assert parse_call('{"name": "f", "arguments": {"x": 1}}', "arguments") == ("f", '{"x": 1}')
    assert parse_call('{"name": "f", "arguments": "{\\"x\\": 1}"}', "arguments") == (
        "f",
        '{"x": 1}',
    )
    assert parse_call('{"name": "f", "arguments": 3}', "arguments") is None
    assert parse_call('{"arguments": {}}', "arguments") is None
