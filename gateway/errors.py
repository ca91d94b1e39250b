"""One exception hierarchy, rendered once per wire format.

    GatewayError
    ├── InvalidRequest           400 invalid_request_error
    │   ├── ContextLengthExceeded    code context_length_exceeded
    │   └── UnsupportedParameter     code unsupported_parameter
    ├── Unauthorized             401
    ├── ModelNotFound            404
    ├── ResponseNotFound         404 (a stored response: unknown, deleted or evicted)
    ├── RouteNotFound            404
    ├── MethodNotAllowed         405
    ├── BodyTooLarge             413
    ├── Overloaded               429 rate_limit_error, with Retry-After
    ├── ClientDisconnected       499 (nobody reads it: for logs and metrics)
    ├── EngineFailure            500 server_error
    ├── EngineUnavailable        503 service_unavailable, with Retry-After
    └── RequestTimeout           504 timeout

Every layer raises these. `body(wire)` is the error in each
API's own shape: OpenAI's `{"error": {"message", "type", "param", "code"}}`, or on
Anthropic's routes `{"type": "error", "error": {"type", "message"}}`, or on Triton's
generate routes `{"error": message}`. It reaches the
wire once per form: as an HTTP response (`gateway/http/errors.py`), or, once a stream
has begun, as the error event of that stream's framer (`Chunks.error`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class Wire(enum.Enum):
    """Which API a route speaks, and so the shape its errors take."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    TRITON = "triton"


# Anthropic's error types by status; anything else is its generic "api_error".
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class GatewayError(Exception):
    """Base class: carries what the OpenAI error body needs."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after  # seconds, sent as Retry-After

    def body(self, wire: Wire = Wire.OPENAI) -> dict[str, Any]:
        if wire is Wire.ANTHROPIC:
            kind = _ANTHROPIC_TYPES.get(self.status_code, "api_error")
            return {"type": "error", "error": {"type": kind, "message": self.message}}
        if wire is Wire.TRITON:
            return {"error": self.message}
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    """The request is malformed or asks for something impossible."""

    status_code = 400
    error_type = "invalid_request_error"

    @classmethod
    def from_validation(cls, errors: Sequence[Mapping[str, Any]]) -> InvalidRequest:
        """pydantic's validation errors (FastAPI's put "body" first) as OpenAI's 400,
        naming the first offending field."""
        first = errors[0]
        if first.get("type") == "json_invalid":
            return cls(f"the body is not valid JSON: {first.get('msg')}")
        param = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        message = str(first.get("msg", "invalid request"))
        return cls(f"{param}: {message}" if param else message, param=param)


class ContextLengthExceeded(InvalidRequest):
    """The prompt, or prompt plus max_tokens in strict mode, does not fit the context."""

    default_code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequest):
    """A valid OpenAI parameter this gateway does not implement (yet)."""

    default_code = "unsupported_parameter"


class Unauthorized(GatewayError):
    """No API key, or one this gateway does not know."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class ModelNotFound(GatewayError):
    """The request names a model this gateway does not serve."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class ResponseNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "response_not_found"


class RouteNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class BodyTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class Overloaded(GatewayError):
    """Admission control refused the request: retry after `retry_after` seconds."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "overloaded"


class ClientDisconnected(GatewayError):
    """The client hung up before its non-streamed response was ready."""

    status_code = 499  # nginx's "client closed request"
    error_type = "invalid_request_error"
    default_code = "client_disconnected"


class EngineFailure(GatewayError):
    """The engine failed this request but is still serving others."""

    default_code = "engine_error"


class EngineUnavailable(GatewayError):
    """The engine is not loaded, has died, or is shutting down."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "engine_unavailable"


class RequestTimeout(GatewayError):
    """The request outlived its deadline."""

    status_code = 504
    error_type = "timeout"
    default_code = "request_timeout"
