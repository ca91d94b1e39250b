"""Locust users for the gateway's OpenAI API: streamed chat with LLM metrics, and plain chat.

    locust -f loadtest/ --headless -u 64 -r 16 -t 30s --host http://127.0.0.1:8000

`StreamingChatUser` (weight 3) streams chat completions and reports, besides
the HTTP request itself (its time is to the response headers), these
pseudo-requests of type "LLM" in locust's table and CSV files:

    ttft (ms)        send to the first chunk that carries content
    itl (ms)         between consecutive content chunks, one entry per gap
    tpot (ms)        (end - first content) / (completion tokens - 1), per request
    e2e (ms)         send to the end of the stream
    tokens/s         the request's completion tokens / its e2e seconds; the
                     "size" columns hold completion tokens, so their total over
                     the run's duration is the aggregate output rate, printed at
                     the end

`ChatUser` (weight 1) sends the same request unstreamed and reports e2e and
tokens/s. Run one kind alone by naming it: `locust -f loadtest/ ChatUser ...`.

Workload options (command line, or environment as LOCUST_MODEL etc.):
--model (default: the first of the server's /v1/models), --prompt-tokens,
--max-tokens, --temperature.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

CHAT_PATH = "/v1/chat/completions"

# Common English words that GPT-2 style BPE tokenizers (SmolLM2's among them)
# encode as one token each after a space: N words are about N prompt tokens,
# plus the chat template's own. The server's usage.prompt_tokens is exact.
_WORD_LIST = (
    "the of and to in is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there one all we their been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down"
)
WORDS = tuple(_WORD_LIST.split())

_models: dict[str, str] = {}  # host -> the model it serves, asked once


def _add_arguments(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("trtllm-gateway workload")
    group.add_argument("--model", default="", env_var="LOCUST_MODEL", help="default: /v1/models")
    group.add_argument("--prompt-tokens", type=int, default=128, env_var="LOCUST_PROMPT_TOKENS")
    group.add_argument("--max-tokens", type=int, default=128, env_var="LOCUST_MAX_TOKENS")
    group.add_argument("--temperature", type=float, default=1.0, env_var="LOCUST_TEMPERATURE")


def _report_output_rate(environment: Environment, **_: Any) -> None:
    """The aggregate output token rate: completion tokens over the run's duration."""
    entry = environment.stats.entries.get(("tokens/s", "LLM"))
    total = environment.stats.total
    if entry is None or not entry.num_requests or not total.last_request_timestamp:
        return
    seconds = max(1e-9, total.last_request_timestamp - total.start_time)
    tokens = entry.total_content_length
    print(f"output tokens: {tokens} in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s")


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_report_output_rate)  # type: ignore[no-untyped-call]


class _ChatUserBase(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: the next request as soon as one ends

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.model = getattr(options, "model", "") or _served_model(self.host or "")
        self.prompt_words = max(1, int(getattr(options, "prompt_tokens", 128)))
        self.max_tokens = int(getattr(options, "max_tokens", 128))
        self.temperature = float(getattr(options, "temperature", 1.0))
        self.rng = random.Random()

    def body(self, stream: bool) -> str:
        prompt = " ".join(self.rng.choice(WORDS) for _ in range(self.prompt_words))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body)

    def metric(self, name: str, value: float, length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type="LLM",
            name=name,
            response_time=value,
            response_length=length,
            exception=None,
            context={},
        )


class StreamingChatUser(_ChatUserBase):
    weight = 3

    @task
    def stream_chat(self) -> None:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        sent = time.perf_counter()
        with self.client.post(
            CHAT_PATH,
            data=self.body(stream=True),
            headers=headers,
            stream=True,
            catch_response=True,
            name=f"{CHAT_PATH} [stream]",
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            stream = _SSEStats(sent)
            try:
                # The raw geventhttpclient response: its readline takes a separator, and
                # SSE lines end in a bare LF (the public readline waits for a CRLF).
                raw = response._response
                assert raw is not None
                while line := raw.readline(b"\n"):
                    stream.line(line, self)
            except Exception as error:  # an error event, a broken stream, bad JSON
                response.failure(f"stream: {error}")
                return
        stream.report(self)


class ChatUser(_ChatUserBase):
    weight = 1

    @task
    def chat(self) -> None:
        sent = time.perf_counter()
        with self.client.post(
            CHAT_PATH,
            data=self.body(stream=False),
            headers={"Content-Type": "application/json"},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            tokens = int((response.json().get("usage") or {}).get("completion_tokens") or 0)
        seconds = time.perf_counter() - sent
        self.metric("e2e (ms)", seconds * 1000)
        self.metric("tokens/s", tokens / seconds, tokens)


class _SSEStats:
    """One stream's content-chunk times and usage, parsed line by line."""

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.first = 0.0
        self.last = 0.0
        self.tokens = 0

    def line(self, line: bytes, user: _ChatUserBase) -> None:
        if not line.startswith(b"data:"):
            return  # blank separators and ": ping" comments
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        chunk = json.loads(payload)
        if "error" in chunk:
            raise RuntimeError(chunk["error"].get("message", "error event"))
        if chunk.get("usage"):
            self.tokens = int(chunk["usage"].get("completion_tokens") or 0)
        if any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices", [])):
            now = time.perf_counter()
            if self.first:
                user.metric("itl (ms)", (now - self.last) * 1000)
            else:
                self.first = now
                user.metric("ttft (ms)", (now - self.sent) * 1000)
            self.last = now

    def report(self, user: _ChatUserBase) -> None:
        end = time.perf_counter()
        user.metric("e2e (ms)", (end - self.sent) * 1000)
        if self.tokens > 1 and self.first:
            user.metric("tpot (ms)", (self.last - self.first) * 1000 / (self.tokens - 1))
        if self.tokens:
            user.metric("tokens/s", self.tokens / (end - self.sent), self.tokens)


def _served_model(host: str) -> str:
    """The first model the server lists, asked once per host."""
    if host not in _models:
        with urllib.request.urlopen(f"{host.rstrip('/')}/v1/models", timeout=10) as reply:
            _models[host] = json.load(reply)["data"][0]["id"]
    return _models[host]
