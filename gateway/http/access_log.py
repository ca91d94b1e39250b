"""What the gateway records of every HTTP exchange, as one pure ASGI middleware.

`ObserveRequests` (outermost) keeps the client's `X-Request-Id` when it is
printable ASCII of at most 128 characters, else makes one; it puts the id in
the scope's `state` (for the routes) and on every response, counts the
response in `gateway_http_requests_total{route,status}`, and writes one JSON
line per request to the `gateway.access` logger once the response has ended.
The app (`gateway/http/app.py`) opens each request's `Exchange` with the server's
own `send`, before any middleware wraps it: a streamed response sends its body
chunks with that, so that no middleware wrapper runs per chunk. It never reads a
body or a header other than the request id and the user agent: prompts,
outputs and API keys never reach a log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from datetime import UTC, datetime

import orjson
from fastapi import Request
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_VALID = re.compile(rb"[\x20-\x7e]{1,128}")

_NAME = "gateway.access"
access_log = logging.getLogger(_NAME)


class Exchange:
    """One HTTP exchange as `ObserveRequests` sees it, shared with the app through the scope.

    Middleware needs a response's start (its status and headers) and its end, never
    its chunks. A streamed response sends its start through every layer, then its
    body with `send_body`, the server's own send, and adds what it sent to
    `body_bytes`: the access log's count.
    """

    __slots__ = ("body_bytes", "send_body")

    def __init__(self, send_body: Send) -> None:
        self.send_body = send_body
        self.body_bytes = 0

    @staticmethod
    def open(scope: Scope, send: Send) -> None:
        """Called with the server's `send`, before any middleware wraps it."""
        scope.setdefault("state", {})["exchange"] = Exchange(send)

    @staticmethod
    def close(scope: Scope) -> None:
        """Once the exchange has ended: what `open` added, so that nothing holds the send."""
        del scope["state"]["exchange"]

    @staticmethod
    def of(scope: Scope) -> Exchange | None:
        found: Exchange | None = scope.get("state", {}).get("exchange")
        return found


class ObserveRequests:
    def __init__(
        self, app: ASGIApp, counter: Counter, routes: frozenset[str], log_access: bool
    ) -> None:
        self.app = app
        self.counter = counter
        self.routes = routes  # known paths; anything else is "other", to bound cardinality
        self.log_access = log_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(HEADER, b"")
        request_id = given.decode() if _VALID.fullmatch(given) else os.urandom(16).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        exchange: Exchange = state["exchange"]  # opened by the app, around every middleware
        header = (HEADER, request_id.encode())
        route = scope["path"] if scope["path"] in self.routes else "other"
        began, clock = time.time(), time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.body":
                exchange.body_bytes += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                self.counter.labels(route, str(status)).inc()
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                duration_ms = (time.perf_counter() - clock) * 1000
                line = _line(scope, headers, began, status, duration_ms, exchange.body_bytes)
                # Not `info()`: it would walk the stack for a file and line the log never shows.
                access_log.handle(access_log.makeRecord(_NAME, logging.INFO, "", 0, line, (), None))


def request_id_of(scope: Scope) -> str:
    """The id `ObserveRequests` (installed outermost by `create_app`) gave this request."""
    found: str = scope["state"]["request_id"]
    return found


async def request_id(request: Request) -> str:
    """FastAPI dependency: this request's id (async: no thread hop)."""
    return request_id_of(request.scope)


def _line(
    scope: Scope,
    headers: dict[bytes, bytes],
    began: float,
    status: int,
    duration_ms: float,
    sent: int,
) -> str:
    client = scope.get("client")
    user_agent = headers.get(b"user-agent")
    record = {
        "time": datetime.fromtimestamp(began, UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id_of(scope),
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "bytes_sent": sent,
        "client": client[0] if client else None,
        "user_agent": user_agent.decode("latin-1") if user_agent is not None else None,
    }
    return orjson.dumps(record).decode()


def log_bare_json_lines() -> None:
    """The access log on stdout as bare JSON lines, without the root format's prefix."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.propagate = False
