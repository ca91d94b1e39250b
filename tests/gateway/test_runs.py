"""n > 1: one engine request and one stream state per choice, interleaved in one stream."""

from __future__ import annotations

import openai

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_n_choices_stream_interleaved_and_each_finishes_once(
    synthetic_gateway: LiveServer,
) -> None:
    stream = client(synthetic_gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        n=3,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    per_choice: dict[int, list[str]] = {0: [], 1: [], 2: []}
    finishes: dict[int, list[str]] = {0: [], 1: [], 2: []}
    order = []
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        order.append(choice.index)
        if choice.finish_reason is not None:
            finishes[choice.index].append(choice.finish_reason)
        elif choice.delta.content:
            per_choice[choice.index].append(choice.delta.content)
    assert finishes == {0: ["length"], 1: ["length"], 2: ["length"]}
    assert all(len(pieces) == 5 for pieces in per_choice.values())
    assert order != sorted(order)  # interleaved, not one choice after another
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 15


def test_n_choices_unstreamed_with_stop_strings_each_cut(synthetic_gateway: LiveServer) -> None:
    sdk = client(synthetic_gateway)
    plain = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6
    )
    text = plain.choices[0].message.content or ""
    stop = text[len(text) // 2 :][:3]
    cut = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, n=2, stop=stop
    )
    assert [c.index for c in cut.choices] == [0, 1]
    for choice in cut.choices:
        assert choice.finish_reason == "stop"
        assert choice.message.content == text[: text.index(stop)]


def test_continuous_usage_counts_up_in_every_chunk(synthetic_gateway: LiveServer) -> None:
    stream = client(synthetic_gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        stream=True,
        extra_body={"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    )
    counts = [c.usage.completion_tokens for c in stream if c.choices and c.usage is not None]
    assert counts == sorted(counts) and counts[-1] == 4
