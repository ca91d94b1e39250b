"""A `GatewayError` on the wire: an HTTP response, or an SSE event once a stream has begun."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError, Wire


def http_response(error: GatewayError, wire: Wire = Wire.OPENAI) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        orjson.dumps(error.body(wire)),
        status_code=error.status_code,
        media_type="application/json",
        headers=headers,
    )


def sse_event(error: GatewayError, wire: Wire = Wire.OPENAI) -> bytes:
    """The error as one SSE event once a stream has begun: OpenAI's `data:` frame (then
    `[DONE]` follows), or Anthropic's `error` event (the stream's last)."""
    data = orjson.dumps(error.body(wire))
    if wire is Wire.ANTHROPIC:
        return b"event: error\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"
