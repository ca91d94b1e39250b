"""The completion routes (chat, text, Anthropic's messages), served without FastAPI's
per-request machinery.

`gateway/http/routes.py` declares them, so the OpenAPI document describes them, and
holds their handlers. FastAPI's way to a handler (matching through the included
router, dependency solving, validating the body through a `TypeAdapter`, an exit
stack, the exception middleware) cost about 400 us a request, a third of a short
completion's CPU. `CompletionRoutes`, the innermost middleware, answers a POST to
either path itself: it reads the body, parses it with orjson, validates it with
the route's pydantic model and calls the same handler. Anything else goes on to
FastAPI. What reaches it has passed every middleware (request id, CORS, API key,
body limit), as for any route.

Triton's generate routes carry the model (and its version) in the path: a
`PathRoute` matches its pattern once no exact path did, and its handler gets the
pattern's groups first. `RouteTable.wire` tells the middleware outside which API
a path speaks, so that their errors (401, 413) take its shape too.

A completion's response raises a `GatewayError` only before it starts (a stream
sends later errors as events), so one caught here is still answered as itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ClientDisconnected, GatewayError, InvalidRequest, Wire
from gateway.http.access_log import request_id_of
from gateway.http.errors import http_response
from gateway.http.state import Services

Handler = Callable[[Any, Services, str], Awaitable[Response]]  # (body, services, request id)
PathParams = Mapping[str, str | None]  # a path pattern's named groups
PathHandler = Callable[[PathParams, Any, Services, str], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class CompletionRoute:
    body: type[pydantic.BaseModel]
    handler: Handler
    wire: Wire = Wire.OPENAI  # the API the route speaks: its errors' shape
    json_only: bool = True  # False: a body of any content type is read as JSON


@dataclass(frozen=True, slots=True)
class PathRoute:
    """A completion route whose path carries parameters, matched by `pattern` (whole)."""

    pattern: re.Pattern[str]
    body: type[pydantic.BaseModel]
    handler: PathHandler
    wire: Wire
    json_only: bool = True


class RouteTable:
    """The completion routes: exact paths first, then path patterns."""

    def __init__(
        self, routes: Mapping[str, CompletionRoute], path_routes: Sequence[PathRoute] = ()
    ) -> None:
        self.routes = dict(routes)
        self.path_routes = tuple(path_routes)

    def route(self, path: str) -> CompletionRoute | None:
        """The POST route for `path`: a path route's handler gets its pattern's groups first."""
        route = self.routes.get(path)
        if route is not None:
            return route
        for path_route in self.path_routes:
            match = path_route.pattern.fullmatch(path)
            if match is not None:
                handler = functools.partial(path_route.handler, match.groupdict())
                return CompletionRoute(
                    path_route.body, handler, path_route.wire, path_route.json_only
                )
        return None

    def wire(self, path: str) -> Wire:
        """The API `path` speaks: its errors' shape."""
        route = self.route(path)
        return Wire.OPENAI if route is None else route.wire


class CompletionRoutes:
    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, CompletionRoute],
        path_routes: Sequence[PathRoute] = (),
    ) -> None:
        self.app = app
        self.table = RouteTable(routes, path_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.table.route(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(route, scope, receive, send)
        except GatewayError as error:
            await http_response(error, route.wire)(scope, receive, send)

    @staticmethod
    async def _serve(route: CompletionRoute, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["app"].state.services
        # A saturated server refuses before reading the body: under a flood of requests
        # it sheds (429) cheaply what it cannot serve, and keeps its loop for the rest.
        services.admission.check()
        try:
            body = route.body.model_validate(await _json_body(scope, receive, route.json_only))
        except pydantic.ValidationError as error:
            raise InvalidRequest.from_validation(error.errors()) from None
        response = await route.handler(body, services, request_id_of(scope))
        await response(scope, receive, send)


async def _json_body(scope: Scope, receive: Receive, json_only: bool) -> Any:
    """The body as JSON. As FastAPI reads one: only sent as `application/json` (or
    `+json`), so a browser cannot post it cross-site without a CORS preflight; unless
    the API takes any (Triton's, which `curl -d` calls with form encoding)."""
    if json_only and not _is_json(dict(scope["headers"]).get(b"content-type")):
        raise InvalidRequest("the body must be JSON, sent with 'Content-Type: application/json'")
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client closed the connection")
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as error:
        # orjson refuses lone UTF-16 surrogates too, which tokenizers would choke on.
        raise InvalidRequest(f"the body is not valid JSON: {error}") from None


def _is_json(content_type: bytes | None) -> bool:
    media_type = (content_type or b"").partition(b";")[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )
