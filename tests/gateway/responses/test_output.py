"""Output items from deltas: their order, their events, and what a stream's events add up to."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.responses.output import Output
from gateway.text.streaming import Delta
from gateway.text.tool_parsers import ToolCallDelta


class Recorder:
    """Encodes each event at once, as a stream does (the items change afterwards)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        self.events.append(orjson.loads(orjson.dumps({"type": kind, **fields})))

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]


DELTAS = [
    Delta(reasoning="Let me "),
    Delta(reasoning="think."),
    Delta(content="It is "),
    Delta(content="sunny."),
    Delta(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"city": ')]),
    Delta(tool_calls=[ToolCallDelta(0, arguments='"Paris"}')]),
    Delta(tool_calls=[ToolCallDelta(1, "call_b", "get_time", "{}")]),
]


def build(deltas: list[Delta], status: str = "completed") -> tuple[Output, Recorder]:
    recorder = Recorder()
    output = Output(recorder)
    for delta in deltas:
        output.add(delta)
    output.close(status)
    return output, recorder


def test_items_come_in_the_order_the_model_wrote_them() -> None:
    output, _ = build(DELTAS)
    items = output.items
    assert [item["type"] for item in items] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert items[1]["content"] == [
        {"type": "output_text", "text": "It is sunny.", "annotations": [], "logprobs": []}
    ]
    assert (items[2]["call_id"], items[2]["name"]) == ("call_a", "get_weather")
    assert items[2]["arguments"] == '{"city": "Paris"}'
    assert (items[3]["call_id"], items[3]["arguments"]) == ("call_b", "{}")
    assert {item["status"] for item in items} == {"completed"}
    assert items[0]["id"].startswith("rs_") and items[1]["id"].startswith("msg_")
    assert items[2]["id"].startswith("fc_")


def test_the_events_open_fill_and_close_each_item() -> None:
    _, recorder = build(DELTAS)
    assert recorder.kinds() == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    added = recorder.events[7]
    # As sent, before any text: an empty message, in progress.
    assert added["item"]["content"] == [] and added["item"]["status"] == "in_progress"
    assert added["output_index"] == 1
    done = recorder.events[17]
    assert done == {
        "type": "response.function_call_arguments.done",
        "item_id": recorder.events[14]["item"]["id"],
        "output_index": 2,
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def reassemble(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client accumulating the events holds (as the openai SDK accumulates them)."""
    rebuilt: list[dict[str, Any]] = []
    for event in events:
        match event["type"]:
            case "response.output_item.added":
                rebuilt.append(event["item"])
            case "response.content_part.added":
                rebuilt[event["output_index"]]["content"].append(event["part"])
            case "response.output_text.delta" | "response.reasoning_text.delta":
                rebuilt[event["output_index"]]["content"][0]["text"] += event["delta"]
            case "response.function_call_arguments.delta":
                rebuilt[event["output_index"]]["arguments"] += event["delta"]
            case "response.output_item.done":
                assert rebuilt[event["output_index"]] | {"status": "completed"} == event["item"]
                rebuilt[event["output_index"]] = event["item"]
    return rebuilt


def test_the_events_reassemble_to_the_items() -> None:
    output, recorder = build(DELTAS)
    assert reassemble(recorder.events) == output.items


TEXT = st.text(alphabet='ab <>{}"\\é', max_size=4)


@st.composite
def deltas(draw: st.DrawFn) -> list[Delta]:
    """Any sequence a ChoiceStream hands over: reasoning, text and calls, a call's
    arguments in one run of deltas (a parser finishes a call before anything else)."""
    out: list[Delta] = []
    calls = 0
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "reasoning", "call", "more"]))
        if kind == "more" and out and out[-1].tool_calls:  # the open call goes on
            out.append(Delta(tool_calls=[ToolCallDelta(calls - 1, arguments=draw(TEXT))]))
        elif kind == "call":
            out.append(Delta(tool_calls=[ToolCallDelta(calls, f"call_{calls}", "f", draw(TEXT))]))
            calls += 1
        elif kind == "reasoning":
            out.append(Delta(reasoning=draw(TEXT)))
        else:
            out.append(Delta(content=draw(TEXT)))
    return out


@given(deltas())
def test_any_stream_reassembles_to_the_unstreamed_output(sequence: list[Delta]) -> None:
    """The property: a stream's events add up to what the non-streamed response says."""
    streamed, recorder = build(sequence)
    whole = Output()  # a non-streamed response's: no events
    for delta in sequence:
        whole.add(delta)
    whole.close()
    assert reassemble(recorder.events) == streamed.items
    strip = [{k: v for k, v in item.items() if k != "id"} for item in whole.items]
    assert strip == [{k: v for k, v in item.items() if k != "id"} for item in streamed.items]
    text = "".join(d.content for d in sequence)
    said = [i["content"][0]["text"] for i in streamed.items if i["type"] == "message"]
    assert "".join(said) == text


def test_a_cut_item_is_incomplete() -> None:
    output, recorder = build([Delta(content="It is")], status="incomplete")
    assert output.items[0]["status"] == "incomplete"
    assert recorder.events[-1]["item"]["status"] == "incomplete"


def test_nothing_written_is_no_item() -> None:
    output, recorder = build([Delta()])
    assert output.items == [] and recorder.events == []
