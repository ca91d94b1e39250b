"""The app's start-up, run as uvicorn runs its lifespan."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import MutableMapping
from typing import Any

from engines.settings import SyntheticSettings
from gateway.http.app import create_app
from gateway.settings import Settings


async def test_start_up_puts_what_it_built_out_of_the_collectors_sight() -> None:
    """A full collection must not scan the start-up's objects (over 100 ms of stopped loop)."""
    app = create_app(Settings(engine="synthetic", synthetic=SyntheticSettings(token_seconds=0)))
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            services = app.state.services
            assert gc.get_freeze_count() > 10_000  # modules, tokenizer, engine
            assert all(services is not o for o in gc.get_objects())  # frozen: never scanned
    finally:
        gc.unfreeze()


async def test_full_collections_are_made_rarer_than_the_default() -> None:
    app = create_app(Settings(engine="synthetic", synthetic=SyntheticSettings(token_seconds=0)))
    default = gc.get_threshold()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (default[0], default[1], 100)
    finally:
        gc.set_threshold(*default)
        gc.unfreeze()


STREAMED = {
    "model": "SmolLM2-135M-Instruct",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 3,
    "stream": True,
}


class Connection:
    """As uvicorn's request cycle: its `send` is a method of what holds the scope."""

    def __init__(self, path: str, body: dict[str, Any] | None = None) -> None:
        headers = [] if body is None else [(b"content-type", b"application/json")]
        self.scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET" if body is None else "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        self.body: bytes | None = b"" if body is None else json.dumps(body).encode()
        self.statuses: list[int] = []

    async def receive(self) -> dict[str, Any]:
        if self.body is None:  # the client stays: the response stops listening when it ends
            await asyncio.Event().wait()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


async def test_a_finished_request_leaves_no_cyclic_garbage() -> None:
    """Under load a full collection scans what is left for it with the loop stopped: a
    request's scope, which holds the server's send through its exchange, must not be."""
    app = create_app(Settings(engine="synthetic", synthetic=SyntheticSettings(token_seconds=0)))
    statuses = []
    try:
        async with app.router.lifespan_context(app):
            for path, body in (("/health", None), ("/v1/chat/completions", STREAMED)):
                connection = Connection(path, body)
                gc.collect()
                await app(connection.scope, connection.receive, connection.send)
                statuses += connection.statuses
                del connection
                assert gc.collect() == 0
    finally:
        gc.unfreeze()
    assert statuses == [200, 200]
