"""Tool calls split from content as the model's text streams in.

Formats, by their key in `TOOL_PARSERS`:

    hermes       <tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>   Hermes, Qwen 2.5/3
    llama3_json  [<|python_tag|>]{"name": "f", "parameters": {...}}; {...}      Llama 3.1-3.3
    mistral      [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]          tokenizers v3-v7
                 [TOOL_CALLS]f[ARGS]{...}[TOOL_CALLS]g[ARGS]{...}               tokenizers v11+

    >>> parser = Hermes()
    >>> parser.push('Let me look.\\n<tool_call>\\n{"name": "f", "argu')
    ('Let me look.', [])
    >>> parser.push('ments": {"x": 1}}\\n</tool_call>')[1][0].arguments
    '{"x": 1}'

* A call goes out whole, in one delta (id, name, all its arguments), once its
  JSON closes: arguments sent piece by piece could not be taken back if the
  JSON proved malformed or was cut off.
* `arguments` is the model's own text of the arguments object, so numbers keep
  their digits (1e999 included). It may be written (llama3: "parameters") as an
  object or as a JSON string holding one.
* Text that looks like a call but is not one (malformed JSON, NaN, no name, no
  arguments object) goes out as content, tags and all: nothing is lost or raises.
* A possible start of a tag ("<tool_c") is held back until decided, as in
  `gateway.text.stops`, so tags never leak. Whitespace between content and a call or
  between calls is dropped; output without calls comes through unchanged.
* Generation that ends inside a call (max_tokens): `flush` sends the call if
  its JSON is complete (only a closing tag missing), else its text as content.
* Names are not checked against the request's tools; a forcing grammar does that.
"""

from __future__ import annotations

import abc
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.text.holdback import held_back
from gateway.text.model_json import JsonEnd, members, parse_call


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int  # which call, 0-based, in order of appearance
    id: str | None = None  # "call_<random>" on a call's first delta only
    name: str | None = None  # on a call's first delta only
    arguments: str = ""  # the next piece of the call's JSON arguments text


class ToolCallParser(Protocol):
    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """(content safe to send, tool-call deltas) for the next piece of text."""

    def flush(self) -> tuple[str, list[ToolCallDelta]]:
        """What was held back, once generation has ended."""

    @property
    def calls(self) -> int:
        """Calls sent so far."""


class _Parser(abc.ABC):
    """Buffering, content and call bookkeeping that the formats share."""

    __slots__ = ("_buffer", "_calls", "_content", "_deltas", "_space", "_trim")

    def __init__(self) -> None:
        self._buffer = ""  # text received and not yet sent or decided
        self._calls = 0
        self._content: list[str] = []  # this step's output
        self._deltas: list[ToolCallDelta] = []
        self._space = ""  # trailing content whitespace: dropped if a call follows
        self._trim = False  # just after a call: leading content whitespace is dropped

    @property
    def calls(self) -> int:
        return self._calls

    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        self._buffer += text
        self._scan(final=False)
        return self._take()

    def flush(self) -> tuple[str, list[ToolCallDelta]]:
        self._scan(final=True)  # consumes the whole buffer
        self._content.append(self._space)
        self._space = ""
        return self._take()

    @abc.abstractmethod
    def _scan(self, *, final: bool) -> None:
        """Consume `_buffer` as far as it is decided (all of it when `final`)."""

    def _send(self, text: str) -> None:
        """Send text as content, holding back whitespace that a call may follow."""
        text = self._space + text
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        sent = text.rstrip()
        self._space = text[len(sent) :]
        self._content.append(sent)

    def _call(self, name: str, arguments: str) -> None:
        self._space, self._trim = "", True
        call_id = "call_" + secrets.token_hex(12)
        self._deltas.append(ToolCallDelta(self._calls, call_id, name, arguments))
        self._calls += 1

    def _take(self) -> tuple[str, list[ToolCallDelta]]:
        content, deltas = "".join(self._content), self._deltas
        self._content, self._deltas = [], []
        return content, deltas

    def _until(self, marker: str, *, final: bool) -> bool:
        """Send content up to `marker` and drop the marker; without it, send what is safe."""
        found = self._buffer.find(marker)
        if found >= 0:
            self._send(self._buffer[:found])
            self._buffer = self._buffer[found + len(marker) :]
            return True
        keep = 0 if final else held_back(self._buffer, (marker,))
        self._send(self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False


class Hermes(_Parser):
    """`<tool_call>{json}</tool_call>` blocks, with content before, between and after."""

    __slots__ = ("_json",)
    START, END = "<tool_call>", "</tool_call>"

    def __init__(self) -> None:
        super().__init__()
        self._json: JsonEnd | None = None  # the call being read, if any

    def _scan(self, *, final: bool) -> None:
        while True:
            if self._json is None:
                if not self._until(self.START, final=final):
                    return
                self._json = JsonEnd()
            if not self._read_call(self._json, final=final):
                return
            self._json = None

    def _read_call(self, json_end: JsonEnd, *, final: bool) -> bool:
        """Send the call after a start tag, or its text as content; False while undecided.

        The call ends where its JSON closes: an end tag inside a string does not end it.
        """
        end = json_end.feed(self._buffer)
        if end is None and json_end.viable:
            if final:  # cut off (max_tokens) inside the call: an unfinished call is no call
                self._buffer = self._space = ""
            return final
        if end is not None:
            tail = self._buffer[end:].lstrip()
            closed = tail.startswith(self.END)
            maybe = not closed and self.END.startswith(tail)  # the end tag may be on its way
            if maybe and not final:
                return False
            call = parse_call(self._buffer[:end], "arguments")
            if call is not None and (closed or maybe):  # maybe, at the end: cut off before it
                self._call(*call)
                self._buffer = tail[len(self.END) :] if closed else ""
                return True
        found = self._buffer.find(self.END)
        if found < 0 and not final:
            return False
        cut = len(self._buffer) if found < 0 else found + len(self.END)
        self._send(self.START + self._buffer[:cut])
        self._buffer = self._buffer[cut:]
        return True


class Llama3Json(_Parser):
    """JSON objects from the first character on, separated by ";"; else all content."""

    __slots__ = ("_json", "_state")
    PYTHON_TAG = "<|python_tag|>"

    def __init__(self) -> None:
        super().__init__()
        self._state = "start"  # then "calls" until something else comes, then "content"
        self._json: JsonEnd | None = None  # the call being read

    def _scan(self, *, final: bool) -> None:
        if self._state == "start":
            self._decide(final=final)
        while self._state == "calls" and self._buffer:
            if self._json is None and not self._next_call(final=final):
                break
            assert self._json is not None
            end = self._json.feed(self._buffer) or 0
            call = parse_call(self._buffer[:end], "parameters", "arguments") if end else None
            if call is None:
                if final and not end and self._json.viable:
                    self._buffer = ""  # cut off inside the call: an unfinished call is no call
                    self._space = ""
                elif end or final:  # not a call
                    self._state = "content"
                break
            self._call(*call)
            self._buffer, self._json = self._buffer[end:], None
        if self._state == "content":
            self._send(self._buffer)
            self._buffer = ""

    def _decide(self, *, final: bool) -> None:
        """Calls if the output starts with "{" (after the python tag), content otherwise."""
        rest = self._buffer.lstrip()
        tagged = rest.startswith(self.PYTHON_TAG)
        if tagged:
            rest = rest[len(self.PYTHON_TAG) :].lstrip()
        elif self.PYTHON_TAG.startswith(rest) and not final:
            return  # maybe the tag, maybe nothing yet
        if rest.startswith("{"):
            self._state, self._buffer = "calls", rest
        elif rest or final:  # the tag is a marker, never content
            self._state, self._buffer = "content", rest if tagged else self._buffer

    def _next_call(self, *, final: bool) -> bool:
        """Start reading the next call, after an optional ";"; or find that content follows."""
        rest = self._buffer.lstrip()
        after = rest[1:].lstrip() if rest.startswith(";") else rest
        if after.startswith("{"):
            self._buffer, self._json = after, JsonEnd()
            return True
        if after or final:
            self._state = "content"
        self._buffer = rest
        return False


class Mistral(_Parser):
    """`[TOOL_CALLS]` then a JSON array of calls, or `name[ARGS]{json}` per call."""

    __slots__ = ("_json", "_name", "_raw", "_state")
    TAG, ARGS = "[TOOL_CALLS]", "[ARGS]"
    _NAME = re.compile(r"[\w.-]*")

    def __init__(self) -> None:
        super().__init__()
        self._state = "content"  # "content", "tag" (after [TOOL_CALLS]), "array", "name", "args"
        self._raw = ""  # the text of the call being read: content again if it is not one
        self._name = ""
        self._json = JsonEnd()

    def _scan(self, *, final: bool) -> None:
        while True:
            if self._state == "content":
                if not self._until(self.TAG, final=final):
                    return
                self._state, self._raw = "tag", self.TAG
            if self._state == "tag" and not self._after_tag(final=final):
                return
            if self._state == "name" and not self._read_name(final=final):
                return
            if self._state in ("array", "args") and not self._read_json(final=final):
                return

    def _after_tag(self, *, final: bool) -> bool:
        rest = self._buffer.lstrip()
        if not rest and not final:
            return False
        self._raw += self._buffer[: len(self._buffer) - len(rest)]
        self._json = JsonEnd()
        self._state, self._buffer = "array" if rest.startswith("[") else "name", rest
        return True

    def _read_name(self, *, final: bool) -> bool:
        name = self._NAME.match(self._buffer)
        assert name is not None  # `*` matches the empty string
        rest = self._buffer[name.end() :]
        if rest.startswith(self.ARGS):  # an empty name fails as a call later
            self._name, self._state = name.group(), "args"
            self._raw += name.group() + self.ARGS
            self._buffer = rest[len(self.ARGS) :]
        elif self.ARGS.startswith(rest) and not final:
            return False
        else:  # not a call
            self._send(self._raw + name.group())
            self._state, self._buffer = "content", rest
        return True

    def _read_json(self, *, final: bool) -> bool:
        end = self._json.feed(self._buffer)
        if end is None and self._json.viable and not final:
            return False
        calls: list[tuple[str, str]] | None = None
        if end is None and self._json.viable:  # cut off inside the calls: no calls, no text
            self._state, self._buffer, self._space = "content", "", ""
            return True
        if end is None:  # no JSON at all
            text = ""
        else:
            text = self._buffer[:end]
            calls = self._parse(text)
        if calls is None:  # not calls: the text goes out as it came
            self._send(self._raw + text)
        for call in calls or ():
            self._call(*call)
        self._state, self._buffer = "content", self._buffer[len(text) :]
        return True

    def _parse(self, text: str) -> list[tuple[str, str]] | None:
        """The calls in an array, or in one `[ARGS]` object; None unless all are calls."""
        if self._state == "args":
            is_object = members(text, "{", "}") is not None
            return [(self._name, text.strip())] if is_object else None
        items = members(text, "[", "]")
        calls = [call for _, _, item in items or () if (call := parse_call(item, "arguments"))]
        return calls if items and len(calls) == len(items) else None


TOOL_PARSERS: dict[str, Callable[[], ToolCallParser]] = {
    "hermes": Hermes,
    "llama3_json": Llama3Json,
    "mistral": Mistral,
}
