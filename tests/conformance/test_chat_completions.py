"""OpenAI conformance over a live gateway, with the official SDK, on every engine."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import LiveServer

PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write one sentence about the sea."}
]


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def model_name(server: LiveServer) -> str:
    return client(server).models.list().data[0].id


def sse_payloads(server: LiveServer, body: dict[str, object]) -> list[str]:
    """The raw `data:` payloads of a stream, as a client's SSE parser sees them."""
    payloads = []
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                payloads.append(line.removeprefix("data: "))
    return payloads


def test_models_lists_the_served_model_with_its_context(gateway: LiveServer) -> None:
    models = client(gateway).models.list().data
    assert len(models) == 1
    assert models[0].model_extra is not None
    assert models[0].model_extra["max_model_len"] == 512


def test_non_streaming_response_has_openai_shape(gateway: LiveServer) -> None:
    name = model_name(gateway)
    completion = client(gateway).chat.completions.create(
        model=name, messages=PROMPT, max_tokens=8, temperature=0
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == name
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 10
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_chunks_have_the_shape_clients_parse(gateway: LiveServer) -> None:
    body = {
        "model": model_name(gateway),
        "messages": PROMPT,
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    payloads = sse_payloads(gateway, body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishing) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] <= 8
    assert finishing[0] is chunks[-2]


def test_stream_without_usage_has_no_usage_chunk(gateway: LiveServer) -> None:
    body = {"model": model_name(gateway), "messages": PROMPT, "max_tokens": 4, "stream": True}
    chunks = [json.loads(p) for p in sse_payloads(gateway, body)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_streamed_content_equals_non_streamed(gateway: LiveServer) -> None:
    sdk, name = client(gateway), model_name(gateway)
    kwargs = {"model": name, "messages": PROMPT, "max_tokens": 16, "temperature": 0}
    whole = sdk.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    stream = sdk.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    pieces, reasons = [], []
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == whole.choices[0].message.content
    assert [r for r in reasons if r] == [whole.choices[0].finish_reason]


def test_max_tokens_ends_with_length(gateway: LiveServer) -> None:
    sdk, name = client(gateway), model_name(gateway)
    completion = sdk.chat.completions.create(
        model=name, messages=PROMPT, max_completion_tokens=3, temperature=0
    )
    if completion.choices[0].finish_reason == "length":
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 3
    else:  # the model may answer in fewer tokens; then EOS ended it
        assert completion.choices[0].finish_reason == "stop"


def test_stop_string_cuts_output_and_is_not_leaked(gateway: LiveServer) -> None:
    sdk, name = client(gateway), model_name(gateway)
    kwargs = {"model": name, "messages": PROMPT, "max_tokens": 16, "temperature": 0}
    full = sdk.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    assert full and len(full) > 6
    stop = full[3:6]
    expected = full[: full.index(stop)]
    cut = sdk.chat.completions.create(stop=[stop], **kwargs)  # type: ignore[call-overload]
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(stream=True, stop=stop, **kwargs)  # type: ignore[call-overload]
    )
    assert streamed == expected


def test_prompt_over_context_is_400_with_vllm_wording(gateway: LiveServer) -> None:
    long_prompt: list[ChatCompletionMessageParam] = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model=model_name(gateway), messages=long_prompt)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("This model's maximum context length is 512 tokens. ")
    assert "However, your prompt contains" in error["message"]


def test_unknown_model_is_404(gateway: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="gpt-nope", messages=PROMPT)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "model_not_found"


def test_metrics_count_the_traffic(gateway: LiveServer) -> None:
    """Per engine request: one time to first token, one end-to-end latency and one queue
    time; one inter-token latency per engine delivery after the first (with logprobs,
    every delivery is a chunk of its own); its finish reason and tokens counted once."""
    sdk, name = client(gateway), model_name(gateway)
    gateway.wait_idle(10, "an earlier test left the engine busy")
    before = gateway.scrape()
    began = time.perf_counter()
    single = sdk.chat.completions.create(model=name, messages=PROMPT, max_tokens=1)
    chunks = list(
        sdk.chat.completions.create(
            model=name,
            messages=PROMPT,
            max_tokens=6,
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    wall = time.perf_counter() - began
    after = gateway.scrape()

    deliveries = sum(
        bool(chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content)
        for chunk in chunks
    )
    assert deliveries >= 1
    streamed_usage = chunks[-1].usage
    assert single.usage is not None and streamed_usage is not None
    reasons: Counter[str] = Counter([single.choices[0].finish_reason])
    reasons.update(
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    )
    assert sum(reasons.values()) == 2

    def grown(metric: str, **labels: str) -> float:
        return after.growth(before, metric, **labels)

    for histogram, count in (
        ("gateway_time_to_first_token_seconds", 2),
        ("gateway_e2e_request_latency_seconds", 2),
        ("gateway_inter_token_latency_seconds", deliveries - 1),
    ):
        assert grown(f"{histogram}_count") == count, histogram
        if count:  # every observation lies within the traffic's wall time
            assert 0 < grown(f"{histogram}_sum") < wall * count, histogram
    assert grown("gateway_request_queue_time_seconds_count") == 2
    assert 0 <= grown("gateway_request_queue_time_seconds_sum") < wall * 2
    for reason in ("stop", "length", "tool_calls", "abort", "error"):
        finished = grown("gateway_request_success_total", finished_reason=reason)
        assert finished == reasons[reason], reason
    assert grown("gateway_prompt_tokens_total") == (
        single.usage.prompt_tokens + streamed_usage.prompt_tokens
    )
    assert grown("gateway_generation_tokens_total") == (
        single.usage.completion_tokens + streamed_usage.completion_tokens
    )
    for gauge in (
        "gateway_num_requests_running",
        "gateway_num_requests_waiting",
        "gateway_kv_cache_usage_perc",
        "gateway_engine_step_seconds",
        "gateway_prefix_cache_queries_total",
        "gateway_prefix_cache_hits_total",
    ):
        after.value(gauge)  # exported, or a KeyError
    assert after.value("gateway_http_requests_total", route="/v1/chat/completions", status="200")
    text = httpx.get(f"{gateway.url}/metrics").text
    assert ":" not in "".join(line.split("{")[0] for line in text.splitlines() if line[:1] != "#")


def test_health_and_ready(gateway: LiveServer) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/ready").status_code == 200
