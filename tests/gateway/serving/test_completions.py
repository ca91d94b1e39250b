"""`POST /v1/completions` over a live gateway on the synthetic engine."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_a_string_prompt_streamed_says_what_it_says_unstreamed(
    synthetic_gateway: LiveServer,
) -> None:
    sdk = client(synthetic_gateway)
    whole = sdk.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8)
    stream = sdk.completions.create(
        model=MODEL,
        prompt="Once upon a time",
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [r for r in reasons if r] == ["length"]  # once, on the last choice chunk
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert whole.id.startswith("cmpl-") and whole.object == "text_completion"
    assert whole.model == MODEL
    (choice,) = whole.choices
    assert (choice.index, choice.logprobs, choice.finish_reason) == (0, None, "length")
    assert whole.usage is not None and whole.usage.completion_tokens == 8
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 8


def test_token_id_prompts_and_prompt_lists_get_n_choices_each(
    synthetic_gateway: LiveServer,
) -> None:
    sdk = client(synthetic_gateway)
    batch = sdk.completions.create(model=MODEL, prompt=["a", "b c"], n=2, max_tokens=3)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert all(c.text for c in batch.choices)
    ids = sdk.completions.create(model=MODEL, prompt=[[1, 2, 3], [4, 5]], max_tokens=3)
    assert len(ids.choices) == 2
    assert batch.usage is not None and ids.usage is not None
    assert ids.usage.prompt_tokens == 5  # each prompt counted once
    assert batch.usage.completion_tokens == 12


def test_echo_puts_the_prompt_first(synthetic_gateway: LiveServer) -> None:
    sdk = client(synthetic_gateway)
    whole = sdk.completions.create(model=MODEL, prompt="Say:", max_tokens=2, echo=True)
    assert whole.choices[0].text.startswith("Say:")
    assert len(whole.choices[0].text) > len("Say:")
    streamed = sdk.completions.create(
        model=MODEL, prompt="Say:", max_tokens=2, echo=True, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    ids = httpx.post(f"{synthetic_gateway.url}/tokenize", json={"prompt": "Say:"}).json()["tokens"]
    from_ids = sdk.completions.create(model=MODEL, prompt=ids, max_tokens=2, echo=True)
    assert from_ids.choices[0].text.startswith("Say:")
    assert from_ids.usage is not None and from_ids.usage.prompt_tokens == len(ids)


def test_logprobs_columns_line_up_with_the_text(synthetic_gateway: LiveServer) -> None:
    sdk = client(synthetic_gateway)
    whole = sdk.completions.create(model=MODEL, prompt="Hi", max_tokens=4, logprobs=2)
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    assert logprobs.token_logprobs is not None and logprobs.top_logprobs is not None
    assert logprobs.text_offset is not None
    assert len(logprobs.tokens) == 4 == len(logprobs.token_logprobs)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)
    assert "".join(logprobs.tokens) == whole.choices[0].text
    assert logprobs.text_offset[0] == 0
    assert logprobs.text_offset[1] == len(logprobs.tokens[0])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [50000]}, "prompt"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "echo": True, "logprobs": 1}, "echo"),
        ({"prompt": "x", "logprobs": 21}, "top_logprobs"),
    ],
)
def test_bad_prompts_and_fields_are_400s(
    synthetic_gateway: LiveServer, fields: dict[str, object], param: str
) -> None:
    response = httpx.post(
        f"{synthetic_gateway.url}/v1/completions",
        json={"model": MODEL, "max_tokens": 2, **fields},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
