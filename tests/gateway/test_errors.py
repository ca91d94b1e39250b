from __future__ import annotations

import json

import pytest

from gateway.errors import (
    ContextLengthExceeded,
    EngineFailure,
    EngineUnavailable,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    UnsupportedParameter,
    Wire,
)
from gateway.http.errors import http_response


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (InvalidRequest("m", param="p"), 400, "invalid_request_error", None),
        (ContextLengthExceeded("m"), 400, "invalid_request_error", "context_length_exceeded"),
        (UnsupportedParameter("m"), 400, "invalid_request_error", "unsupported_parameter"),
        (ModelNotFound("m"), 404, "invalid_request_error", "model_not_found"),
        (EngineFailure("m"), 500, "server_error", "engine_error"),
        (EngineUnavailable("m"), 503, "service_unavailable", "engine_unavailable"),
    ],
)
def test_http_rendering(error: GatewayError, status: int, kind: str, code: str | None) -> None:
    response = http_response(error)
    assert response.status_code == status
    assert response.media_type == "application/json"
    assert json.loads(bytes(response.body)) == {
        "error": {"message": "m", "type": kind, "param": error.param, "code": code}
    }


def test_tritons_shape_is_the_message_alone() -> None:
    assert ModelNotFound("gone").body(Wire.TRITON) == {"error": "gone"}
