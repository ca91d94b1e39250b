"""JSON that a model wrote: where a value closes as text streams in, and the
members of an object or array with each value's own text.

Strict JSON only (no NaN or Infinity); anything else reads as "not JSON"
(None), never an exception: model text is untrusted.
"""

from __future__ import annotations

import json
from typing import Any


class JsonEnd:
    """Where a JSON object or array at the start of a text closes, as the text grows.

    Only brackets outside strings are counted: whether the text between them
    is JSON is for `members` to decide once they close.
    """

    __slots__ = ("_depth", "_end", "_escape", "_in_string", "_seen", "viable")

    def __init__(self) -> None:
        self._depth, self._seen = 0, 0
        self._end: int | None = None
        self._in_string = self._escape = False
        self.viable = True  # False once something other than whitespace precedes the bracket

    def feed(self, text: str) -> int | None:
        """Where the value ends in `text`, or None. Each call passes the whole text so far."""
        if self._end is not None:
            return self._end
        for i in range(self._seen, len(text)):
            char = text[i]
            if self._depth == 0:
                if char not in "{[" and not char.isspace():
                    self.viable = False
                    return None
                self._depth = int(char in "{[")
            elif self._in_string:
                if self._escape:
                    self._escape = False
                elif char == "\\":
                    self._escape = True
                else:
                    self._in_string = char != '"'
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._end = i + 1
                    return self._end
        self._seen = len(text)
        return None


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse)  # strict JSON: no NaN or Infinity


def members(text: str, opener: str, closer: str) -> list[tuple[Any, Any, str]] | None:
    """(key, value, the value's own text) of each member of the JSON object or array
    that `text` is, or None where it is not one. Keys are None in arrays."""
    i = _skip(text, 0)
    if not text.startswith(opener, i):
        return None
    members: list[tuple[Any, Any, str]] = []
    i = _skip(text, i + 1)
    try:
        while members or not text.startswith(closer, i):
            key = None
            if opener == "{":
                key, i = _DECODER.raw_decode(text, i)
                i = _skip(text, i)
                if not isinstance(key, str) or not text.startswith(":", i):
                    return None
                i = _skip(text, i + 1)
            value, end = _DECODER.raw_decode(text, i)
            members.append((key, value, text[i:end]))
            i = _skip(text, end)
            if not text.startswith(",", i):
                break
            i = _skip(text, i + 1)
    except (ValueError, RecursionError):
        return None
    closed = text.startswith(closer, i) and _skip(text, i + 1) == len(text)
    return members if closed else None


def _skip(text: str, i: int) -> int:
    """The index of the first character at or after `i` that is not JSON whitespace."""
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def parse_call(text: str, *argument_keys: str) -> tuple[str, str] | None:
    """(name, arguments JSON as the model wrote it) of a call object's text, or None."""
    fields = {key: (value, raw) for key, value, raw in members(text, "{", "}") or ()}
    name = fields.get("name", (None, ""))[0]
    value, raw = next((fields[key] for key in argument_keys if key in fields), (None, ""))
    if isinstance(value, str):  # the arguments object, written as a JSON string
        raw = value.strip()
    if isinstance(name, str) and name and members(raw, "{", "}") is not None:
        return name, raw
    return None
