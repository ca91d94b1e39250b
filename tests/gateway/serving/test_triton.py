"""Triton's generate and generate_stream over live gateways, with the request bodies that
tensorrtllm_backend's ensemble is sent: on the synthetic engine and on the embedded model."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer

MODEL = "SmolLM2-135M-Instruct"
ENSEMBLE = "/v2/models/ensemble"
BODY: dict[str, Any] = {
    "text_input": "What is machine learning?",
    "max_tokens": 12,
    "bad_words": "",
    "stop_words": "",
}


def generate(server: LiveServer, path: str = ENSEMBLE, **fields: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}/generate", json=BODY | fields, timeout=60)


def events(server: LiveServer, path: str = ENSEMBLE, **fields: Any) -> list[dict[str, Any]]:
    """generate_stream's events, each `data: {...}`, after a 200 of server-sent events."""
    url = f"{server.url}{path}/generate_stream"
    with httpx.stream("POST", url, json=BODY | fields, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        lines = [line for line in response.iter_lines() if line and not line.startswith(":")]
    assert all(line.startswith("data: ") for line in lines)
    return [orjson.loads(line[6:]) for line in lines]


def completion_text(server: LiveServer, **fields: Any) -> str:
    """What /v1/completions answers for the same greedy text completion."""
    body = {"model": MODEL, "prompt": BODY["text_input"], "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{server.url}/v1/completions", json=body | fields, timeout=60)
    text: str = response.json()["choices"][0]["text"]
    return text


def test_generate_answers_the_prompt_and_its_completion(synthetic_gateway: LiveServer) -> None:
    response = generate(synthetic_gateway, stream=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "model_name": "ensemble",
        "model_version": "1",
        "text_output": BODY["text_input"] + completion_text(synthetic_gateway),
    }


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_is_read_as_json_whatever_its_content_type(
    synthetic_gateway: LiveServer, content_type: str | None
) -> None:
    """As Triton reads it: the backend's documented `curl -d '{...}'` sends form encoding."""
    headers = {} if content_type is None else {"content-type": content_type}
    url = f"{synthetic_gateway.url}{ENSEMBLE}/generate"
    response = httpx.post(url, content=orjson.dumps(BODY), headers=headers, timeout=60)
    assert response.status_code == 200
    assert response.json()["text_output"].startswith(BODY["text_input"])
    unparsable = httpx.post(url, content=b"text_input=hi", headers=headers, timeout=60)
    assert unparsable.status_code == 400
    assert unparsable.json()["error"].startswith("the body is not valid JSON")


def test_exclude_input_in_output_answers_the_completion_alone(
    synthetic_gateway: LiveServer,
) -> None:
    response = generate(synthetic_gateway, exclude_input_in_output=True)
    assert response.json()["text_output"] == completion_text(synthetic_gateway)


def test_the_served_name_and_version_1_name_the_same_model(synthetic_gateway: LiveServer) -> None:
    whole = generate(synthetic_gateway).json()
    named = generate(synthetic_gateway, f"/v2/models/{MODEL}/versions/1").json()
    assert named == whole | {"model_name": MODEL}


def test_generate_stream_sends_each_deltas_text(synthetic_gateway: LiveServer) -> None:
    streamed = events(synthetic_gateway, stream=True)
    assert len(streamed) > 1
    assert {(e["model_name"], e["model_version"]) for e in streamed} == {("ensemble", "1")}
    assert "".join(e["text_output"] for e in streamed) == completion_text(synthetic_gateway)


def test_generate_stream_without_stream_sends_one_whole_event(
    synthetic_gateway: LiveServer,
) -> None:
    assert events(synthetic_gateway, stream=False) == [generate(synthetic_gateway).json()]


def test_log_probs_come_per_token_with_their_sum(synthetic_gateway: LiveServer) -> None:
    whole = generate(synthetic_gateway, return_log_probs=True).json()
    assert len(whole["output_log_probs"]) == 12
    assert whole["cum_log_probs"] == pytest.approx(sum(whole["output_log_probs"]))
    streamed = events(synthetic_gateway, stream=True, return_log_probs=True)
    assert [lp for e in streamed for lp in e["output_log_probs"]] == whole["output_log_probs"]
    assert streamed[-1]["cum_log_probs"] == pytest.approx(whole["cum_log_probs"])


def test_stop_words_end_the_output_and_stay_in_it(synthetic_gateway: LiveServer) -> None:
    completion = completion_text(synthetic_gateway)
    word = completion[3:6]
    expected = completion[: completion.index(word) + len(word)]
    for stop_words in (word, [word], ["", word]):
        response = generate(synthetic_gateway, stop_words=stop_words, exclude_input_in_output=True)
        assert response.json()["text_output"] == expected
    streamed = events(synthetic_gateway, stream=True, stop_words=[word])
    assert "".join(e["text_output"] for e in streamed) == expected


@pytest.mark.parametrize(
    ("path", "fields", "status", "message"),
    [
        (
            "/v2/models/nope",
            {},
            400,
            "Request for unknown model: 'nope' is not found",
        ),
        (
            f"{ENSEMBLE}/versions/2",
            {},
            404,
            "Request for unknown model: 'ensemble' version 2 is not found",
        ),
        (
            ENSEMBLE,
            {"beam_width": 2},
            400,
            "beam_width 2 is not supported: beam search is not implemented, "
            "only beam_width 1 (sampling or greedy)",
        ),
        (
            ENSEMBLE,
            {"temperature": -1},
            400,
            "temperature: Input should be greater than or equal to 0",
        ),
        (
            ENSEMBLE,
            {"max_tokens": "many"},
            400,
            "max_tokens: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            ENSEMBLE,
            {"stream": True},
            400,
            "generate answers once: use generate_stream for 'stream': true",
        ),
    ],
)
def test_errors_take_tritons_shape_and_status(
    synthetic_gateway: LiveServer, path: str, fields: dict[str, Any], status: int, message: str
) -> None:
    response = generate(synthetic_gateway, path, **fields)
    assert (response.status_code, response.json()) == (status, {"error": message})
    streamed = httpx.post(f"{synthetic_gateway.url}{path}/generate_stream", json=BODY | fields)
    if fields != {"stream": True}:  # what generate_stream refuses, it refuses before streaming
        assert (streamed.status_code, streamed.json()) == (status, {"error": message})


def test_an_unknown_input_is_a_400_naming_it(synthetic_gateway: LiveServer) -> None:
    response = generate(synthetic_gateway, guided_decoding_guide_type="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("unsupported input 'guided_decoding_guide_type'; ")


def test_another_method_is_a_404_in_tritons_shape(synthetic_gateway: LiveServer) -> None:
    response = httpx.get(f"{synthetic_gateway.url}{ENSEMBLE}/generate")
    assert (response.status_code, response.json()) == (404, {"error": "no such route"})


def test_a_client_that_leaves_generate_stream_aborts_the_request(
    synthetic_gateway: LiveServer,
) -> None:
    url = f"{synthetic_gateway.url}{ENSEMBLE}/generate_stream"
    with httpx.stream("POST", url, json=BODY | {"max_tokens": 400, "stream": True}) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert synthetic_gateway.metric("gateway_num_requests_running") == 1
    synthetic_gateway.wait_idle(5, "the engine kept generating for a gone client")
    assert synthetic_gateway.metric("gateway_kv_cache_usage_perc") == 0


def test_a_client_that_leaves_generate_aborts_the_request(synthetic_gateway: LiveServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        # 500 engine steps take over a second: the client gives up long before.
        httpx.post(
            f"{synthetic_gateway.url}{ENSEMBLE}/generate",
            json=BODY | {"max_tokens": 500},
            timeout=0.2,
        )
    synthetic_gateway.wait_idle(5, "the engine kept generating for a gone client")


@pytest.mark.model
def test_the_embedded_model_generates_greedily_streamed_or_not(
    transformers_gateway: LiveServer,
) -> None:
    whole = generate(transformers_gateway, stream=False).json()
    expected = completion_text(transformers_gateway)
    assert whole == {
        "model_name": "ensemble",
        "model_version": "1",
        "text_output": BODY["text_input"] + expected,
    }
    streamed = events(transformers_gateway, stream=True)
    assert "".join(e["text_output"] for e in streamed) == expected
    assert events(transformers_gateway, stream=False) == [whole]
