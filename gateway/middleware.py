"""Pure ASGI middleware: they wrap `send` and leave streaming and cancellation intact."""

from __future__ import annotations

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HTTPMetricsMiddleware:
    """Counts every HTTP response by route and status code."""

    def __init__(self, app: ASGIApp, counter: Counter, routes: frozenset[str]) -> None:
        self.app = app
        self.counter = counter
        self.routes = routes  # known paths; anything else is "other", to bound cardinality

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counter.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_counted)
