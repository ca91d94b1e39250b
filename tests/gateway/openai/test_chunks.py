from __future__ import annotations

import json
from typing import Any

from openai.types import Completion
from openai.types.chat import ChatCompletionChunk

from engines.base import FinishReason, TokenLogprob
from gateway.errors import EngineUnavailable
from gateway.openai.chunks import DONE, ChatChunks, CompletionChunks
from gateway.openai.logprobs import LogprobFormatter
from gateway.text.streaming import ChoiceStream, Delta
from gateway.text.tool_parsers import ToolCallDelta

TEXTS = {1: "Hi", 2: "!"}
FORMATTER = LogprobFormatter(TEXTS.__getitem__)
CHAT = ChatChunks("chatcmpl-1", 1700000000, "m", logprobs=FORMATTER)


def payload(frame: bytes) -> dict[str, Any]:
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    parsed: dict[str, Any] = json.loads(frame[6:-2])
    return parsed


def choice(index: int = 0) -> ChoiceStream:
    return ChoiceStream(index, detokenizer=None)  # type: ignore[arg-type]  # unused here


def test_role_chunk() -> None:
    assert payload(CHAT.role(choice())) == {
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
    chunk = ChatCompletionChunk.model_validate(payload(CHAT.delta(choice(2), Delta(text))))
    assert chunk.choices[0].index == 2
    assert chunk.choices[0].delta.content == text
    assert chunk.choices[0].finish_reason is None


def test_finish_and_usage_chunks() -> None:
    done = choice()
    done.finish_reason = FinishReason.LENGTH
    finish = ChatCompletionChunk.model_validate(payload(CHAT.finish(done)))
    assert finish.choices[0].finish_reason == "length"
    assert finish.choices[0].delta.content is None
    usage = payload(CHAT.usage({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}))
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert DONE == b"data: [DONE]\n\n"


def test_continuous_usage_rides_on_every_chunk() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    chunk = ChatCompletionChunk.model_validate(payload(CHAT.delta(choice(), Delta("a"), usage)))
    assert chunk.usage is not None and chunk.usage.completion_tokens == 1


def test_tool_call_pieces_carry_id_and_name_first_then_arguments_only() -> None:
    first = Delta(tool_calls=[ToolCallDelta(0, "call_x", "get_weather", '{"city": ')])
    rest = Delta(tool_calls=[ToolCallDelta(0, arguments='"Paris"}')])
    chunks = [
        ChatCompletionChunk.model_validate(payload(CHAT.delta(choice(), delta)))
        for delta in (first, rest)
    ]
    calls = [chunk.choices[0].delta.tool_calls for chunk in chunks]
    assert calls[0] is not None and calls[1] is not None
    assert (calls[0][0].id, calls[0][0].type) == ("call_x", "function")
    assert calls[0][0].function is not None and calls[0][0].function.name == "get_weather"
    assert calls[1][0].id is None and calls[1][0].function is not None
    assert calls[1][0].function.name is None
    assert calls[1][0].function.arguments == '"Paris"}'


def test_reasoning_content_is_always_named_when_a_parser_is_on() -> None:
    chunks = ChatChunks("c", 1, "m", reasoning=True)
    thought = payload(chunks.delta(choice(), Delta(reasoning="hmm")))["choices"][0]["delta"]
    said = payload(chunks.delta(choice(), Delta("yes")))["choices"][0]["delta"]
    assert thought == {"content": None, "reasoning_content": "hmm"}
    assert said == {"content": "yes", "reasoning_content": None}


def test_chat_logprobs_ride_with_their_delta() -> None:
    delta = Delta("Hi", token_ids=[1], logprobs=[TokenLogprob(-0.1, ((1, -0.1),))])
    chunk = ChatCompletionChunk.model_validate(payload(CHAT.delta(choice(), delta)))
    assert chunk.choices[0].logprobs is not None
    (entry,) = chunk.choices[0].logprobs.content or []
    assert (entry.token, entry.logprob, entry.top_logprobs[0].token) == ("Hi", -0.1, "Hi")


def test_completion_chunks_parse_as_completions_with_offsets() -> None:
    chunks = CompletionChunks("cmpl-1", 1, "m", logprobs=FORMATTER)
    state = choice(1)
    frames = [
        chunks.text(state, "echo "),
        chunks.delta(state, Delta("Hi", token_ids=[1], logprobs=[TokenLogprob(-0.1)])),
        chunks.delta(state, Delta("!", token_ids=[2], logprobs=[TokenLogprob(-0.2)])),
    ]
    state.finish_reason = FinishReason.STOP
    frames.append(chunks.finish(state))
    # The SDK builds streamed completions without validation (finish_reason is null
    # until the end); the last frame must validate as a whole Completion.
    parsed = [payload(frame)["choices"][0] for frame in frames]
    assert [c["text"] for c in parsed] == ["echo ", "Hi", "!", ""]
    assert [c["logprobs"]["text_offset"] for c in parsed[1:3]] == [[0], [2]]
    last = Completion.model_validate(payload(frames[-1]))
    assert (last.object, last.choices[0].finish_reason) == ("text_completion", "stop")


def test_an_error_is_one_data_frame_in_openais_shape() -> None:
    frame = ChatChunks("c", 1, "m").error(EngineUnavailable("gone", code="shutdown"))
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    assert frame.count(b"\n") == 2
    assert json.loads(frame[6:])["error"]["code"] == "shutdown"
