"""A streamed response's events around its output: the prelude, the terminal event, usage."""

from __future__ import annotations

from typing import Any

import orjson

from engines.base import FinishReason
from gateway.responses.events import ResponseEvents, head
from gateway.responses.protocol import ResponsesRequest
from gateway.text.streaming import ChoiceStream, Delta

USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 7,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4},
}


def parse(frames: bytes) -> list[dict[str, Any]]:
    events = []
    for block in frames.split(b"\n\n"):
        if block:
            name, data = block.split(b"\n")
            event = orjson.loads(data.removeprefix(b"data: "))
            assert name == b"event: " + event["type"].encode()
            events.append(event)
    return events


def choice(reason: FinishReason, reasoning_tokens: int) -> ChoiceStream:
    stream = ChoiceStream(0, None)  # type: ignore[arg-type]
    stream.finish_reason, stream.reasoning_tokens = reason, reasoning_tokens
    return stream


def stream(reason: FinishReason) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    stored: list[dict[str, Any]] = []
    body = ResponsesRequest.model_validate({"model": "m", "input": "Hi.", "metadata": {"k": "v"}})
    events = ResponseEvents(head(body, "resp_1"), stored.append)
    frames = b"".join(events.prelude())
    done = choice(reason, 3)
    frames += events.delta(done, Delta(reasoning="hm", content="Hello"), None)
    frames += events.finish(done, None) + events.usage(USAGE) + events.end()
    return parse(frames), stored


def test_a_completed_stream_ends_with_the_whole_response_and_stores_it() -> None:
    events, stored = stream(FinishReason.STOP)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    created, last = events[0]["response"], events[-1]
    assert (created["status"], created["output"], created["metadata"]) == (
        "in_progress",
        [],
        {"k": "v"},
    )
    assert last["type"] == "response.completed"
    response = last["response"]
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 17,
    }
    assert stored == [response]


def test_a_stream_cut_by_max_output_tokens_ends_incomplete() -> None:
    events, stored = stream(FinishReason.LENGTH)
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][-1]["status"] == "incomplete"
    assert stored == [last["response"]]
