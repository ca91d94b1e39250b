"""A minimal HTTP/1.1 + SSE streaming client on an asyncio protocol.

Written by hand because the load generator must cost far less CPU per token
than the gateway it measures, on a machine where both share 2 cores. httpx,
aiohttp and even asyncio streams spend tens of microseconds per chunk in their
own layers (an await, a future and a task switch per read). Here each arriving
TCP segment is parsed in `data_received` without any await: the HTTP chunked
framing, the SSE events, one `orjson.loads` per event. Only the end of a
response wakes the awaiting coroutine. Connections are kept alive between
requests, as a pooled client would.

It understands what OpenAI-style servers send: a chunked (or content-length)
`text/event-stream` body of `data: {...}` events separated by blank lines,
`: comment` keep-alives, an optional `data: [DONE]`, usage in any chunk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson


class HTTPError(Exception):
    """A non-200 answer, a broken stream, or an error event inside a stream."""


class Refused(HTTPError):
    """A non-200 answer read to its end: the connection stays usable, as a client's pool
    keeps it. `retry_after`: its Retry-After header in seconds, if it had one."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(slots=True)
class StreamRecord:
    """What a client saw of one streamed chat completion (perf_counter seconds)."""

    sent: float
    content_times: list[float] = field(default_factory=list)  # one per content chunk
    done: float = 0.0  # the end of the response
    completion_tokens: int = 0  # from the server's usage (0: it sent none)
    prompt_tokens: int = 0
    text_chars: int = 0
    finish_reason: str = ""  # the last choice's (empty: the server sent none)

    @property
    def ttft(self) -> float:
        return self.content_times[0] - self.sent if self.content_times else float("nan")


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects after a failure or a close."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._protocol: _ResponseProtocol | None = None
        self.current: StreamRecord | None = None  # the response being read, if any

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    async def stream(self, path: str, body: bytes) -> StreamRecord:
        """POST `body` and read the SSE answer to its end."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_ResponseProtocol, self._host, self._port)
            self._protocol = protocol
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        done = protocol.request(head + body)
        self.current = protocol.record
        try:
            record = await done
        except Refused:
            if protocol.closed:
                self._protocol = None
            raise
        except BaseException:
            self.close()  # a half-read response leaves the connection unusable
            raise
        self.current = None
        if protocol.closed:
            self._protocol = None
        return record


class _ResponseProtocol(asyncio.Protocol):
    """Parses one response at a time, as its bytes arrive."""

    def __init__(self) -> None:
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self.record = StreamRecord(sent=0.0)
        self._done: asyncio.Future[StreamRecord] | None = None
        self._events = _EventParser(self.record)
        self._status = 0
        self._keep_alive = True
        self._remaining = -1  # body bytes left (content-length); -1: chunked
        self._in_head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPError(f"connection lost: {exc}"))

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def request(self, data: bytes) -> asyncio.Future[StreamRecord]:
        assert self._transport is not None and self._done is None
        self.record = StreamRecord(sent=time.perf_counter())
        self._events = _EventParser(self.record)
        self._done = asyncio.get_running_loop().create_future()
        self._in_head = True
        self._transport.write(data)
        return self._done

    def data_received(self, data: bytes) -> None:
        # One timestamp per segment: every event in it arrived together.
        now = time.perf_counter()
        self._buffer = self._buffer + data if self._buffer else data
        try:
            while self._done is not None and self._parse_once(now):
                pass
        except Exception as error:
            self._fail(error)
            self.close()

    def _parse_once(self, now: float) -> bool:
        """Consumes one unit (head, chunk, body) from the buffer; False: wait for more."""
        if self._remaining < 0 and not self._in_head:
            return self._parse_chunk(now)  # the hot path: one chunk per streamed event
        if self._in_head:
            return self._parse_head()
        return self._parse_sized(now)

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        self._buffer = self._buffer[end + 4 :]
        self._status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        self._keep_alive = headers.get("connection") != "close"
        chunked = headers.get("transfer-encoding") == "chunked"
        self._remaining = -1 if chunked else int(headers.get("content-length", "0"))
        self._in_head = False
        if self._status != 200:
            retry_after = headers.get("retry-after", "")
            self._events = _ErrorBody(self._status, float(retry_after) if retry_after else None)
        return True

    def _parse_sized(self, now: float) -> bool:
        if len(self._buffer) < self._remaining:
            return False
        body, self._buffer = self._buffer[: self._remaining], self._buffer[self._remaining :]
        self._events.feed(body, now)
        self._complete(now)
        return True

    def _parse_chunk(self, now: float) -> bool:
        buffer = self._buffer
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            return False
        size = int(buffer[:line_end].split(b";", 1)[0], 16)
        if size == 0:  # the last chunk: then optional trailers and a blank line
            end = buffer.find(b"\r\n\r\n", line_end)
            if end < 0:
                return False
            self._buffer = buffer[end + 4 :]
            self._complete(now)
            return True
        start = line_end + 2
        stop = start + size
        if len(buffer) < stop + 2:
            return False
        self._buffer = buffer[stop + 2 :]
        self._events.feed(buffer[start:stop], now)
        return True

    def _complete(self, now: float) -> None:
        self.record.done = now
        try:
            self._events.finish()
        except Refused as refused:  # the answer was read whole: the connection goes on
            done, self._done = self._done, None
            if not self._keep_alive:
                self.close()
            if done is not None and not done.done():
                done.set_exception(refused)
            return
        done, self._done = self._done, None
        if not self._keep_alive:
            self.close()
        if done is not None and not done.done():
            done.set_result(self.record)

    def _fail(self, error: Exception) -> None:
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_exception(error)


class _EventParser:
    """Splits a byte stream into SSE events and records the ones that matter."""

    __slots__ = ("_buffer", "record")

    def __init__(self, record: StreamRecord) -> None:
        self.record = record
        self._buffer = b""

    def feed(self, data: bytes, now: float) -> None:
        if self._buffer:
            data = self._buffer + data
        if b"\r" in data:  # servers may end lines with CRLF; events then end in CRLFCRLF
            data = data.replace(b"\r\n", b"\n")
        events = data.split(b"\n\n")
        self._buffer = events.pop()
        for event in events:
            if event.startswith(b"data:") and b"\n" not in event:
                self._data(event[5:], now)  # the usual event: a single data line
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._data(line[5:], now)

    def finish(self) -> None:
        if self._buffer.strip():  # a last event without its blank line
            self.feed(b"\n\n", self.record.done)

    def _data(self, payload: bytes, now: float) -> None:
        if len(payload) < 10 and payload.strip() == b"[DONE]":
            return
        chunk: dict[str, Any] = orjson.loads(payload)
        choices = chunk.get("choices")
        if choices:
            record = self.record
            for choice in choices:
                delta = choice.get("delta")
                content = delta.get("content") if delta else None
                if content:
                    record.content_times.append(now)
                    record.text_chars += len(content)
                reason = choice.get("finish_reason")
                if reason:
                    record.finish_reason = reason
        elif "error" in chunk:
            raise HTTPError(f"error event: {chunk['error']}")
        usage = chunk.get("usage")
        if usage:
            self.record.completion_tokens = int(usage.get("completion_tokens") or 0)
            self.record.prompt_tokens = int(usage.get("prompt_tokens") or 0)


class _ErrorBody(_EventParser):
    """The body of a non-200 answer: collected, then raised as `Refused`."""

    __slots__ = ("_body", "_retry_after", "_status")

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(StreamRecord(sent=0.0))
        self._status = status
        self._retry_after = retry_after
        self._body = b""

    def feed(self, data: bytes, now: float) -> None:
        self._body += data

    def finish(self) -> None:
        raise Refused(f"HTTP {self._status}: {self._body[:200]!r}", self._retry_after)
