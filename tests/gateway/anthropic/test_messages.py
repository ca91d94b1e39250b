from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engines.base import FinishReason
from gateway.anthropic.messages import MessageEvents, message_body, stop_reason
from gateway.openai.bodies import Collected
from gateway.text.stops import StopMatcher
from gateway.text.streaming import ChoiceStream, Delta
from gateway.text.tool_parsers import ToolCallDelta


class _Detokenizer:
    def push(self, token_ids: Any) -> str:
        return ""

    def flush(self) -> str:
        return ""


def choice(reason: FinishReason | None = None, stops: StopMatcher | None = None) -> ChoiceStream:
    stream = ChoiceStream(0, _Detokenizer(), stops)  # type: ignore[arg-type]
    stream.finish_reason = reason
    return stream


def events(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for block in frames.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            parsed.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return parsed


def test_text_then_two_tool_calls_make_three_blocks_each_opened_and_closed_once() -> None:
    framer = MessageEvents("msg_1", "m", lambda: 9)
    start = events(b"".join(framer.prelude(10, cached_tokens=4)))
    assert [name for name, _ in start] == ["message_start", "ping"]
    assert start[0][1]["message"]["usage"]["input_tokens"] == 6  # cached tokens apart
    assert start[0][1]["message"]["usage"]["cache_read_input_tokens"] == 4
    stream = choice(FinishReason.TOOL_CALLS)
    frames = framer.delta(stream, Delta(content="Let me check."), None)
    frames += framer.delta(stream, Delta(tool_calls=[ToolCallDelta(0, "c0", "w", '{"a"')]), None)
    frames += framer.delta(stream, Delta(tool_calls=[ToolCallDelta(0, arguments=": 1}")]), None)
    frames += framer.delta(stream, Delta(tool_calls=[ToolCallDelta(1, "c1", "t", "{}")]), None)
    frames += framer.finish(stream, None)
    got = events(frames)
    assert [(name, data.get("index")) for name, data in got] == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert got[3][1]["content_block"] == {"type": "tool_use", "id": "c0", "name": "w", "input": {}}
    assert [d["delta"]["partial_json"] for n, d in got[4:6]] == ['{"a"', ": 1}"]
    assert got[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert got[-2][1]["usage"] == {"output_tokens": 9}


def test_stop_reasons() -> None:
    assert stop_reason(choice(FinishReason.LENGTH)) == ("max_tokens", None)
    assert stop_reason(choice(FinishReason.STOP)) == ("end_turn", None)
    matcher = StopMatcher(["##"])
    matcher.push("a ## b")
    assert stop_reason(choice(FinishReason.STOP, matcher)) == ("stop_sequence", "##")


def test_the_body_keeps_complete_calls_and_drops_a_cut_one() -> None:
    out = Collected(choice(FinishReason.LENGTH))
    out.add(Delta(content="Hi.", tool_calls=[ToolCallDelta(0, "c0", "w", '{"a": 1}')]))
    out.add(Delta(tool_calls=[ToolCallDelta(1, "c1", "w", '{"a": ')]))
    body = message_body(out, "msg_1", "m", (10, 5, 0))
    assert body["content"] == [
        {"type": "text", "text": "Hi."},
        {"type": "tool_use", "id": "c0", "name": "w", "input": {"a": 1}},
    ]
    assert (body["stop_reason"], body["usage"]["output_tokens"]) == ("max_tokens", 5)


TEXT = st.text(alphabet='ab {}"é', max_size=4)


@st.composite
def deltas(draw: st.DrawFn) -> list[Delta]:
    """Text and complete calls in any order, as a ChoiceStream hands them over."""
    out, calls = [], 0
    for _ in range(draw(st.integers(0, 10))):
        pieces = []
        if draw(st.booleans()):
            arguments = json.dumps({"k": draw(TEXT)})
            half = draw(st.integers(0, len(arguments)))
            pieces = [
                ToolCallDelta(calls, f"toolu_{calls}", "f", arguments[:half]),
                ToolCallDelta(calls, arguments=arguments[half:]),
            ]
            calls += 1
        out.append(Delta(content=draw(TEXT), tool_calls=pieces))
    return out


@given(deltas())
def test_any_stream_reassembles_to_the_message_body(sequence: list[Delta]) -> None:
    """The property: a Messages stream's blocks add up to the non-streamed message's."""
    framer = MessageEvents("msg_1", "m", lambda: 1)
    stream = choice(FinishReason.STOP)
    frames = b"".join(framer.delta(stream, delta, None) for delta in sequence)
    frames += framer.finish(stream, None)
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for name, data in events(frames):
        if name == "content_block_start":
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            blocks[data["index"]]["text"] += data["delta"]["text"]
        elif name == "content_block_delta":
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    collected = Collected(stream)
    for delta in sequence:
        collected.add(delta)
    body = message_body(collected, "msg_1", "m", (1, 1, 0))
    texts = [b for b in body["content"] if b["type"] == "text" and b["text"]]
    streamed_texts = "".join(b["text"] for b in blocks if b["type"] == "text")
    assert streamed_texts == "".join(b["text"] for b in texts)
    uses = [b for b in blocks if b["type"] == "tool_use"]
    assert uses == [b for b in body["content"] if b["type"] == "tool_use"]
