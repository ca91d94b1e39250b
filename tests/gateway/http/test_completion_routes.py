"""The completion routes' own front door, with fake ASGI `receive`/`send`; and a live check
that FastAPI's other routes and the OpenAPI document still see them."""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.responses import JSONResponse, Response

from gateway.errors import Wire
from gateway.http.completion_routes import CompletionRoute, CompletionRoutes, PathRoute, RouteTable
from gateway.http.state import Services
from gateway.openai.protocol import ChatCompletionRequest
from gateway.serving.admission import Admission
from tests.conftest import LiveServer

Message = MutableMapping[str, Any]
PATH = "/v1/chat/completions"
VALID = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PATTERN = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]+))?/generate")


class Front:
    """`CompletionRoutes` over a handler that echoes what it was given, and an app that
    records what passed on to it."""

    def __init__(self, max_requests: int = 8) -> None:
        rejections = Counter("r", "r", ("model_name", "reason"), registry=CollectorRegistry())
        self.admission = Admission(max_requests, 1000, 1, rejections, "m")
        self.received = 0
        self.handled: list[tuple[ChatCompletionRequest, str]] = []
        self.params: list[Mapping[str, str | None]] = []
        self.passed: list[str] = []
        self.routes = CompletionRoutes(
            self._app,
            {PATH: CompletionRoute(ChatCompletionRequest, self._handler)},
            [PathRoute(PATTERN, ChatCompletionRequest, self._path_handler, Wire.TRITON)],
        )

    async def _path_handler(
        self, params: Mapping[str, str | None], body: Any, services: Services, request_id: str
    ) -> Response:
        self.params.append(params)
        return await self._handler(body, services, request_id)

    async def _handler(self, body: Any, services: Services, request_id: str) -> Response:
        self.handled.append((body, request_id))
        return JSONResponse({"model": body.model})

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        self.passed.append(scope["path"])

    async def call(
        self,
        chunks: Sequence[bytes],
        *,
        content_type: bytes | None = b"application/json",
        method: str = "POST",
        path: str = PATH,
        disconnect: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        headers = [] if content_type is None else [(b"content-type", content_type)]
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": headers,
            "state": {"request_id": "req-1"},
            "app": SimpleNamespace(
                state=SimpleNamespace(services=SimpleNamespace(admission=self.admission))
            ),
        }
        messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        if disconnect:
            messages = [{**messages[0], "more_body": True}, {"type": "http.disconnect"}]
        sent: list[Message] = []

        async def receive() -> Message:
            self.received += 1
            return messages.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        await self.routes(scope, receive, send)
        if not sent:
            return 0, {}
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], orjson.loads(body)


async def test_a_valid_body_reaches_the_handler_in_pieces_too() -> None:
    front = Front()
    raw = orjson.dumps(VALID)
    status, body = await front.call([raw[:10], raw[10:]])
    assert (status, body) == (200, {"model": "m"})
    [(request, request_id)] = front.handled
    assert request.messages[0].content == "hi" and request_id == "req-1"
    assert front.passed == []


async def test_a_path_route_gets_its_patterns_groups_first() -> None:
    front = Front()
    for path in ("/v2/models/a/generate", "/v2/models/b/versions/3/generate"):
        assert await front.call([orjson.dumps(VALID)], path=path) == (200, {"model": "m"})
    assert front.params == [{"model": "a", "version": None}, {"model": "b", "version": "3"}]


async def test_a_path_routes_errors_take_its_shape() -> None:
    front = Front()
    status, body = await front.call([b"{}"], path="/v2/models/a/generate")
    assert (status, body) == (400, {"error": "model: Field required"})


def test_the_table_tells_each_paths_wire() -> None:
    table = Front().routes.table
    assert isinstance(table, RouteTable)
    assert table.wire("/v2/models/a/versions/1/generate") is Wire.TRITON
    assert table.wire(PATH) is table.wire("/v2/models/a/generate/x") is Wire.OPENAI


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", PATH),
        ("POST", "/v1/models"),
        ("POST", "/tokenize"),
        ("GET", "/v2/models/a/generate"),
        ("POST", "/v2/models/a/versions/x/generate"),
    ],
)
async def test_anything_else_goes_on_to_fastapi(method: str, path: str) -> None:
    front = Front()
    assert await front.call([b""], method=method, path=path) == (0, {})
    assert front.passed == [path]


@pytest.mark.parametrize(
    "content_type",
    [None, b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"],
)
async def test_a_body_not_sent_as_json_is_400(content_type: bytes | None) -> None:
    """A browser posts text/plain cross-site without a preflight: it must not run."""
    front = Front()
    status, body = await front.call([orjson.dumps(VALID)], content_type=content_type)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "Content-Type: application/json" in body["error"]["message"]
    assert front.handled == []


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"Application/JSON",
        b"application/x+json",
    ],
)
async def test_json_media_types_are_accepted(content_type: bytes) -> None:
    front = Front()
    status, _ = await front.call([orjson.dumps(VALID)], content_type=content_type)
    assert status == 200


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        (b"", None, "not valid JSON"),
        (b'{"model": ', None, "not valid JSON"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
            None,
            "surrogate",
        ),
        (b"[]", None, "dictionary"),
        (b'{"model": "m", "messages": []}', "messages", "at least 1"),
        (b'{"model": "m", "messages": [{"role": "robot"}]}', "messages.0.role", "system"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}',
            "n",
            "greater than",
        ),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(
    raw: bytes, param: str | None, words: str
) -> None:
    front = Front()
    status, body = await front.call([raw])
    assert status == 400
    assert body["error"]["param"] == param
    assert words in body["error"]["message"]
    assert front.handled == []


async def test_a_saturated_server_refuses_before_reading_the_body() -> None:
    """Shedding load costs no parsing: even an invalid body gets the 429."""
    front = Front(max_requests=1)
    front.admission.in_flight = 1
    status, body = await front.call([b"{not json"])
    assert (status, body["error"]["code"]) == (429, "overloaded")
    assert (front.received, front.handled) == (0, [])


async def test_a_client_gone_while_sending_its_body_is_never_handled() -> None:
    front = Front()
    status, body = await front.call([b'{"model":'], disconnect=True)
    assert status == 499
    assert body["error"]["code"] == "client_disconnected"
    assert front.handled == []


def test_the_live_routes_keep_fastapis_answers_and_document(synthetic_gateway: LiveServer) -> None:
    url = synthetic_gateway.url
    assert httpx.get(f"{url}{PATH}").status_code == 405
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    for path in (PATH, "/v1/completions"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("Request")
    text = httpx.post(
        f"{url}{PATH}", content=orjson.dumps(VALID), headers={"content-type": "text/plain"}
    )
    assert text.status_code == 400
    assert text.headers["x-request-id"]
