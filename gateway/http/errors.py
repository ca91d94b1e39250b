"""A `GatewayError` as an HTTP response (a stream's framer writes its error event)."""

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
