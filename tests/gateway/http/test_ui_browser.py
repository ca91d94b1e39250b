"""The playground and the dashboard in a real headless Chromium, against a live gateway on
the synthetic engine with an API key: streamed text, stop, figures, snippets that run,
model text kept as text, charts that move."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from engines.settings import SyntheticSettings
from gateway.settings import Settings
from tests.conftest import LiveServer, Scrape, serve
from tests.gateway.http.browser import CHROMIUM, Browser, Page

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: `make test` installs Debian's chromium package when run as root",
)

KEY = "ui-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "SmolLM2-135M-Instruct"
# 50 tokens a second: a long answer streams for seconds, so stopping it is seen mid-stream.
# What the dashboard shows for a figure with no value yet (an en dash).
NO_VALUE = "\u2013"
PACE = SyntheticSettings(token_seconds=0.02, max_seq_len=4096)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LiveServer]:
    yield from serve(Settings(engine="synthetic", synthetic=PACE, api_keys=[SecretStr(KEY)]))


@pytest.fixture(scope="module")
def page(gateway: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The playground, its key given through the page's own form."""
    browser = Browser(tmp_path_factory.mktemp("chromium"))
    try:
        tab = Page(browser)
        tab.goto(f"{gateway.url}/")
        tab.wait_for("!document.getElementById('key-form').hidden", "the page asked for no key")
        assert tab.evaluate("location.pathname") == "/ui/"
        tab.fill("#key", KEY)
        tab.evaluate("document.getElementById('key-form').requestSubmit()")
        tab.wait_for(
            f"document.getElementById('model').textContent === 'model: {MODEL}'",
            "the page did not list the model with the key",
        )
        yield tab
    finally:
        browser.close()


def scrape(gateway: LiveServer) -> Scrape:
    return Scrape(httpx.get(f"{gateway.url}/metrics", headers=AUTH).text)


def send(page: Page, prompt: str, max_tokens: int) -> None:
    page.fill("#max_tokens", str(max_tokens))
    page.fill("#prompt", prompt)
    page.click("#send")


def last_answer(part: str) -> str:
    return f"[...document.querySelectorAll('.turn.assistant')].at(-1).querySelector('.{part}')"


def test_an_answer_streams_in_and_stop_aborts_it(page: Page, gateway: LiveServer) -> None:
    before = scrape(gateway)
    send(page, "Tell me a long story", max_tokens=2000)
    content = last_answer("content")
    streamed = page.wait_for(
        f"{content}.textContent.length > 20 && {content}.textContent", "no text streamed in"
    )
    page.wait_for(f"{content}.textContent.length > {len(streamed)}", "the answer stopped streaming")
    assert page.evaluate("document.getElementById('send').disabled") is True
    page.click("#stop-button")
    page.wait_for(f"{last_answer('meta')}.textContent.endsWith('stopped')", "no stop shown")
    deadline = time.monotonic() + 5
    while (after := scrape(gateway)).value("gateway_num_requests_running") != 0:
        assert time.monotonic() < deadline, "the stopped request still runs"
        time.sleep(0.02)
    assert after.growth(before, "gateway_request_success_total", finished_reason="abort") == 1
    assert after.growth(before, "gateway_request_success_total") == 1
    assert page.evaluate("document.getElementById('send').disabled") is False
    assert page.errors == []


def test_an_answer_shows_its_usage_ttft_and_speed(page: Page, gateway: LiveServer) -> None:
    page.click("#clear")
    page.fill("#system", "Be brief.")
    send(page, "Hello", max_tokens=12)
    meta = page.wait_for(f"{last_answer('meta')}.textContent", "the answer never finished")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    prompt = httpx.post(f"{gateway.url}/tokenize", json={"messages": messages}, headers=AUTH)
    whole = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "max_tokens": 12},
        headers=AUTH,
    ).json()
    assert re.fullmatch(
        rf"prompt {prompt.json()['count']} · completion 12 · TTFT 0\.\d{{3}} s"
        r" · \d+\.\d tokens/s · finish: length",
        meta,
    ), meta
    assert page.text(".turn.user") == "Hello"
    assert (
        page.evaluate(f"{last_answer('content')}.textContent")
        == (whole["choices"][0]["message"]["content"])
    )
    assert page.errors == []


def test_the_snippets_run_and_answer_as_the_page_did(page: Page, gateway: LiveServer) -> None:
    """The Python snippet (the openai SDK) prints the page's answer; curl's streams it."""
    page.click("#clear")
    page.fill("#system", "")
    page.fill("#seed", "7")
    page.fill("#temperature", "0.5")
    page.fill("#stop", "no such stop\nnor this")
    send(page, "Say 'hi'", max_tokens=8)
    answer = page.wait_for(
        f"{last_answer('meta')}.textContent && {last_answer('content')}.textContent",
        "the answer never finished",
    )
    page.click("#clear")
    page.fill("#prompt", "Say 'hi'")
    environment = {**os.environ, "GATEWAY_API_KEY": KEY}
    python = subprocess.run(
        [sys.executable, "-c", page.text("#python")],
        capture_output=True, text=True, env=environment, timeout=60, check=True,
    )  # fmt: skip
    assert python.stdout == answer
    curl = subprocess.run(
        ["bash", "-c", page.text("#curl")],
        capture_output=True, text=True, env=environment, timeout=60, check=True,
    )  # fmt: skip
    events = [line[6:] for line in curl.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == answer
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_json_mode_and_errors_reach_the_page(page: Page) -> None:
    """The schema goes out as response_format; the synthetic engine refuses it in the stream."""
    page.click("#clear")
    page.fill("#format", "json_schema")
    page.fill("#schema", '{"type": "object"}')
    send(page, "JSON please", max_tokens=8)
    page.wait_for(f"{last_answer('meta')}.textContent", "the answer never finished")
    assert page.evaluate(f"{last_answer('error')}.textContent") == (
        "the synthetic engine cannot enforce constraints"
    )
    assert page.evaluate(f"{last_answer('meta')}.textContent") == "failed"
    body = json.loads(page.text("#curl").split(" -d '")[1].rstrip("'"))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}},
    }
    page.fill("#format", "text")
    page.fill("#tools", "[{")
    send(page, "With broken tools", max_tokens=8)
    page.wait_for(f"{last_answer('meta')}.textContent", "the answer never finished")
    assert page.evaluate(f"{last_answer('error')}.textContent").startswith(
        "tools is not valid JSON: "
    )
    assert page.text("#python").startswith("tools is not valid JSON: ")
    page.fill("#tools", "")
    assert page.errors == []


def test_model_text_is_shown_as_text(page: Page, gateway: LiveServer) -> None:
    """Markup from the user or the model is never run; reasoning and tool calls stream apart."""
    page.click("#clear")
    markup = "<b>bold</b><img src=x onerror=\"window.injected='model'\">"
    deltas = [
        {"role": "assistant", "content": "", "reasoning_content": "Thinking <i>aloud</i>"},
        {"content": markup},
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]  # fmt: skip
    events = [{"choices": [{"index": 0, "delta": delta}]} for delta in deltas]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    page.intercept("*/v1/chat/completions", 200, "text/event-stream", body.encode())
    try:
        send(page, "<img src=x onerror=\"window.injected='user'\">", max_tokens=8)
        page.wait_for(f"{last_answer('meta')}.textContent", "the answer never finished")
    finally:
        page.stop_intercepting()
    assert page.text(".turn.user") == "<img src=x onerror=\"window.injected='user'\">"
    assert page.evaluate(f"{last_answer('reasoning')}.textContent") == "Thinking <i>aloud</i>"
    assert page.evaluate(f"{last_answer('content')}.textContent") == markup
    assert page.evaluate(f"{last_answer('tool-call')}.textContent") == (
        'tool call: get_weather({"city": "Paris"})'
    )
    meta = page.evaluate(f"{last_answer('meta')}.textContent")  # no usage was sent
    assert re.fullmatch(r"TTFT \d\.\d{3} s · finish: tool_calls", meta), meta
    assert page.evaluate("document.querySelectorAll('#log img, #log b, #log i').length") == 0
    assert page.evaluate("window.injected === undefined") is True
    assert page.errors == []


def test_the_playground_screenshot_is_not_blank(page: Page, tmp_path: Path) -> None:
    shot = page.screenshot()
    (tmp_path / "playground.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.size == (1280, 860)
    assert len(image.getcolors(1 << 20) or []) > 50  # text, borders, bubbles: not one colour


def traffic(gateway: LiveServer, requests: int) -> None:
    """`requests` streamed chat completions at once, of 150 tokens each (about 3 s)."""

    def one() -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 150, "stream": True}  # fmt: skip
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body,
                          headers=AUTH, timeout=30) as response:  # fmt: skip
            assert response.status_code == 200
            response.read()

    threads = [threading.Thread(target=one) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_the_dashboard_charts_the_traffic(page: Page, gateway: LiveServer, tmp_path: Path) -> None:
    page.goto(f"{gateway.url}/ui/stats")
    output = "document.querySelector('#{} [data-line=\"{}\"]').textContent"
    page.wait_for(f"{output.format('tokens', 'generated')} === '0'", "no rate after 2 s")
    assert page.text("#ttft [data-line='p50']") == NO_VALUE  # nothing observed in the window yet
    sender = threading.Thread(target=traffic, args=(gateway, 4))
    sender.start()
    page.wait_for(f"{output.format('requests', 'running')} === '4'", "4 running never shown")
    sender.join()
    page.wait_for(f"Number({output.format('tokens', 'generated')}) > 0", "no tokens/s shown")
    page.wait_for(f"{output.format('ttft', 'p50')} !== '{NO_VALUE}'", "no TTFT percentile")
    page.wait_for(f"{output.format('itl', 'p99')} !== '{NO_VALUE}'", "no ITL percentile")
    page.wait_for(f"{output.format('requests', 'running')} === '0'", "requests still shown")
    assert 0 < float(page.text("#ttft [data-line='p50']")) < 1
    assert 0.01 < float(page.text("#itl [data-line='p50']")) < 0.1  # 0.02 s a step
    assert page.errors == []
    png = page.screenshot()
    (tmp_path / "dashboard.png").write_bytes(png)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    box = page.evaluate(
        "(() => { const r = document.querySelector('#tokens canvas').getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom].map(Math.round); })()"
    )
    chart = shot.crop(tuple(box))
    blue = (0x2F, 0x6F, 0xDE)  # --s0, the "generated" line
    assert any(
        isinstance(colour, tuple)
        and max(abs(a - b) for a, b in zip(colour, blue, strict=True)) < 24
        for _, colour in chart.getcolors(1 << 20) or []
    ), "no line drawn in the tokens/s chart"
    assert len(shot.getcolors(1 << 20) or []) > 50
