"""A `GatewayError` on the wire: an HTTP response, or an SSE event once a stream has begun."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError


def http_response(error: GatewayError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        orjson.dumps(error.body()),
        status_code=error.status_code,
        media_type="application/json",
        headers=headers,
    )


def sse_event(error: GatewayError) -> bytes:
    """The error as one SSE `data:` frame, sent before `[DONE]` once a stream has begun."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"
