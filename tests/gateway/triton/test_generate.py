"""Triton's generate body and generate_stream's events."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tokenizers import Tokenizer

from engines.base import TokenLogprob
from gateway.errors import InvalidRequest
from gateway.openai.bodies import Collected
from gateway.text.detokenizer import IncrementalDetokenizer
from gateway.text.streaming import ChoiceStream, Delta
from gateway.triton.generate import GenerateEvents, WholeEvent, generate_body


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture
def choice(tokenizer: Tokenizer) -> ChoiceStream:
    """The choice a frame is of: the framer reads nothing of it."""
    return ChoiceStream(0, IncrementalDetokenizer(tokenizer, []))


def logprobs(*values: float) -> list[TokenLogprob]:
    return [TokenLogprob(value) for value in values]


def data(event: bytes) -> object:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    return orjson.loads(event[6:])


def test_the_body_leads_with_the_prompt_unless_excluded(choice: ChoiceStream) -> None:
    out = Collected(choice, content=["Hello", " world"])
    assert generate_body(out, "ensemble", "1", prompt="Say: ", logprobs=False) == {
        "model_name": "ensemble",
        "model_version": "1",
        "text_output": "Say: Hello world",
    }
    assert generate_body(out, "m", "1", prompt="", logprobs=False)["text_output"] == "Hello world"


def test_the_body_carries_log_probs_when_asked(choice: ChoiceStream) -> None:
    out = Collected(choice, content=["a"], token_ids=[1, 2], logprobs=logprobs(-0.5, float("-inf")))
    body = generate_body(out, "m", "1", prompt="", logprobs=True)
    assert (body["cum_log_probs"], body["output_log_probs"]) == (-9999.5, [-0.5, -9999.0])


def test_each_event_is_one_deltas_text(choice: ChoiceStream) -> None:
    events = GenerateEvents("ensemble", "1", logprobs=False)
    assert events.delta(choice, Delta('Hi "x"'), None) == (
        b'data: {"model_name":"ensemble","model_version":"1","text_output":"Hi \\"x\\""}\n\n'
    )
    assert events.finish(choice, None) == events.usage({}) == events.end() == b""


def test_events_carry_their_tokens_log_probs_and_the_running_sum(choice: ChoiceStream) -> None:
    events = GenerateEvents("m", "1", logprobs=True)
    first = data(events.delta(choice, Delta("a", token_ids=[1], logprobs=logprobs(-1.0)), None))
    second = data(
        events.delta(choice, Delta("b", token_ids=[2, 3], logprobs=logprobs(-0.5, -0.25)), None)
    )
    assert first == {
        "model_name": "m",
        "model_version": "1",
        "text_output": "a",
        "cum_log_probs": -1.0,
        "output_log_probs": [-1.0],
    }
    assert second == {
        "model_name": "m",
        "model_version": "1",
        "text_output": "b",
        "cum_log_probs": -1.75,
        "output_log_probs": [-0.5, -0.25],
    }


def test_a_failed_stream_ends_with_tritons_error_event() -> None:
    events = GenerateEvents("m", "1", logprobs=False)
    assert events.error(InvalidRequest("bad")) == b'data: {"error":"bad"}\n\n'


def test_a_stream_not_asked_to_stream_is_one_whole_event(choice: ChoiceStream) -> None:
    stream = choice
    event = WholeEvent("ensemble", "1", stream, prompt="Q: ", logprobs=False)
    assert event.delta(stream, Delta("A"), None) == b""
    assert event.delta(stream, Delta("B"), None) == b""
    assert data(event.finish(stream, None)) == {
        "model_name": "ensemble",
        "model_version": "1",
        "text_output": "Q: AB",
    }
