from __future__ import annotations

import json
from pathlib import Path

from openai.types.chat import ChatCompletionChunk
from tokenizers import Tokenizer

from engines.base import FinishReason
from gateway.detokenizer import IncrementalDetokenizer
from gateway.stops import StopMatcher
from gateway.streaming import DONE, ChoiceStream, ChunkEncoder

ENCODER = ChunkEncoder("chatcmpl-1", 1700000000, "m")


def payload(frame: bytes) -> dict[str, object]:
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    parsed: dict[str, object] = json.loads(frame[6:-2])
    return parsed


def test_role_chunk() -> None:
    assert payload(ENCODER.role(0)) == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }


def test_content_chunk_escapes_text_and_parses_in_the_sdk() -> None:
    text = 'quote " backslash \\ newline \n emoji 😀'
    frame = ENCODER.content(2, text)
    chunk = ChatCompletionChunk.model_validate(payload(frame))
    assert chunk.choices[0].index == 2
    assert chunk.choices[0].delta.content == text
    assert chunk.choices[0].finish_reason is None


def test_finish_and_usage_chunks() -> None:
    finish = ChatCompletionChunk.model_validate(payload(ENCODER.finish(0, "length")))
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None
    usage = payload(ENCODER.usage({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}))
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert DONE == b"data: [DONE]\n\n"


def test_choice_stream_cuts_at_stop_and_reports_it(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("One. Two. Three.", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), StopMatcher([" Two"]))
    text = ""
    for token_id in ids:
        text += choice.push([token_id])
        if choice.finish_reason:
            break
    assert (text, choice.finish_reason) == ("One.", "stop")
    assert choice.tokens < len(ids)


def test_choice_stream_finish_releases_held_text(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("ends with T", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), StopMatcher([" The end"]))
    text = choice.push(ids)
    assert text == "ends with"
    assert choice.finish(FinishReason.LENGTH) == " T"
    assert choice.finish_reason == "length"
