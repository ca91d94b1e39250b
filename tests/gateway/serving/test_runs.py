"""n > 1: one engine request and one stream state per choice, interleaved in one stream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from engines.base import SamplingParams
from engines.settings import SyntheticSettings
from gateway.serving.runs import choice_sampling
from gateway.settings import Settings
from tests.conftest import LiveServer, serve

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
    """Each content chunk's usage counts the tokens delivered so far (1, 2, 3, ... unless
    the engine's steps coalesce; with logprobs every chunk says how many it holds)."""
    stream = client(synthetic_gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        logprobs=True,
        stream=True,
        extra_body={"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    )
    role, *contents, finish, final = list(stream)
    assert role.choices[0].delta.role == "assistant"
    assert final.choices == [] and final.usage is not None
    prompt_tokens = final.usage.prompt_tokens
    assert final.usage.completion_tokens == 4
    delivered, counts, expected = 0, [], []
    for chunk in contents:
        (choice,) = chunk.choices
        assert choice.logprobs is not None and choice.logprobs.content  # one delivery
        delivered += len(choice.logprobs.content)
        assert chunk.usage is not None, "a content chunk without its usage so far"
        assert chunk.usage.prompt_tokens == prompt_tokens
        assert chunk.usage.total_tokens == prompt_tokens + chunk.usage.completion_tokens
        counts.append(chunk.usage.completion_tokens)
        expected.append(delivered)
    assert counts == expected and delivered == 4
    assert finish.choices[0].finish_reason == "length"
    assert finish.usage is not None and finish.usage.completion_tokens == 4


@pytest.fixture(scope="module")
def every_other_fails() -> Iterator[LiveServer]:
    # 50 ms steps: a choice left running would still run for about 20 s.
    settings = SyntheticSettings(token_seconds=0.05, max_seq_len=512, fail_every_nth_request=2)
    yield from serve(Settings(engine="synthetic", synthetic=settings))


def test_one_failing_choice_ends_the_stream_and_aborts_the_others(
    every_other_fails: LiveServer,
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "n": 2,
        "max_tokens": 300,
        "stream": True,
    }
    with httpx.stream("POST", f"{every_other_fails.url}/v1/chat/completions", json=body) as r:
        payloads = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["code"] == "engine_error"
    every_other_fails.wait_idle(5, "the other choice kept generating")


def test_a_client_leaving_an_n_choice_stream_aborts_every_choice(
    synthetic_gateway: LiveServer,
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "n": 3,
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream("POST", f"{synthetic_gateway.url}/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        for _ in range(12):
            next(lines)
        assert synthetic_gateway.metric("gateway_num_requests_running") == 3
    synthetic_gateway.wait_idle(5, "the engine kept generating for a gone client")


def test_seeded_choices_each_get_their_own_seed() -> None:
    seeded = SamplingParams(8, seed=7)
    assert [choice_sampling(seeded, n).seed for n in range(3)] == [7, 8, 9]
    assert choice_sampling(SamplingParams(8), 2).seed is None
