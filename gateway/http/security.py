"""API keys and the request body limit, as pure ASGI middleware.

Both answer before the routes run, with the gateway's own errors: 401 for a
missing or unknown key (also on unknown routes, so that a 404 reveals nothing
to the unauthenticated), 413 for a body past `max_body_bytes`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config_errors import ConfigError
from gateway.errors import BodyTooLarge, Unauthorized, Wire
from gateway.http.errors import http_response
from gateway.settings import Settings

log = logging.getLogger(__name__)


def api_key_digests(settings: Settings) -> tuple[bytes, ...]:
    """SHA-256 digests of every configured key; empty: authentication is off.

    A configured key file that is missing or holds no key is a start-up error:
    silently serving without authentication would be worse. No key at all on a
    non-loopback host is allowed, with a warning.
    """
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_key_file is not None:
        keys += _read_key_file(settings.api_key_file)
    if any(not key.strip() for key in keys):
        raise ConfigError(
            "api_keys (GATEWAY_API_KEYS) holds an empty key; "
            "for example: GATEWAY_API_KEYS='[\"key-1\"]'"
        )
    if not keys and not _is_loopback(settings.host):
        log.warning("no API keys configured: %s serves anyone who can reach it", settings.host)
    return tuple(_digest(key.strip().encode()) for key in keys)


def _read_key_file(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"api_key_file (GATEWAY_API_KEY_FILE) not found: {path}")
    lines = (line.strip() for line in path.read_text().splitlines())
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ConfigError(
            f"api_key_file (GATEWAY_API_KEY_FILE) holds no key: {path}; write one key a line"
        )
    return keys


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class APIKeyAuth:
    """Requires `Authorization: Bearer <key>` (or Anthropic's `x-api-key: <key>`) on every
    path but `open_paths`. A 401 takes the shape of the API its path speaks."""

    def __init__(
        self,
        app: ASGIApp,
        digests: tuple[bytes, ...],
        open_paths: Iterable[str],
        wires: Callable[[str], Wire],
    ):
        """`wires`: the API a path speaks (its 401's shape)."""
        self.app = app
        self.digests = digests
        self.open_paths = frozenset(open_paths)
        self.wires = wires

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = http_response(
            Unauthorized("a valid API key is required"), self.wires(scope["path"])
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        header = headers.get(b"authorization")
        if header is None:
            scheme, token = b"bearer", headers.get(b"x-api-key", b"")
        else:
            scheme, _, token = header.partition(b" ")
        # Fixed-length digests compared with every key, without stopping at a match:
        # the time taken says nothing about any key or about which one matched.
        digest = _digest(token.strip())
        matched = False
        for key in self.digests:
            matched |= hmac.compare_digest(digest, key)
        return matched and scheme.lower() == b"bearer"


class BodyLimit:
    """413 for a body past `max_bytes`: declared (Content-Length) or streamed (chunked).

    A declared size is refused before any byte is read. A streamed body is
    counted as it arrives and refused at the first chunk past the limit, so
    at most one chunk beyond it is ever in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, wires: Callable[[str], Wire]) -> None:
        """`wires`: the API a path speaks (its 413's shape)."""
        self.app = app
        self.max_bytes = max_bytes
        self.wires = wires

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await http_response(self._error(), self.wires(scope["path"]))(scope, receive, send)
            return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised inside the route's body parsing; app.py renders it as itself.
                raise self._error()
            return message

        await self.app(scope, receive_counted, send)

    def _error(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body exceeds {self.max_bytes} bytes")
