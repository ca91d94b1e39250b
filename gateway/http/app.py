"""The application factory and its lifespan.

Start-up: resolve the model directory (converting the embedded default once),
load the tokenizer, start the engine, then build `Services`. Shutdown runs the
same steps backwards; uvicorn has already stopped accepting and drained what
it could by then.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry, Counter
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from engines import create_engine
from engines.base import Engine
from gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, RouteNotFound
from gateway.http.access_log import Exchange, ObserveRequests, request_id_of
from gateway.http.completion_routes import CompletionRoutes, RouteTable
from gateway.http.errors import http_response
from gateway.http.routes import COMPLETION_ROUTES, PATH_ROUTES, router
from gateway.http.security import APIKeyAuth, BodyLimit, api_key_digests
from gateway.http.state import Services
from gateway.http.ui import ui_paths, ui_router
from gateway.serving.admission import Admission
from gateway.serving.lengths import served_limits
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.loop_lag import LoopLag
from gateway.serving.metrics import EngineCollector, Metrics
from gateway.serving.model_files import EMBEDDED_NAME, resolve_model_dir
from gateway.serving.prompts import PromptRenderer
from gateway.serving.runs import Runner
from gateway.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, engine: Engine | None = None, lifecycle: Lifecycle | None = None
) -> FastAPI:
    """The gateway app; `engine` replaces the one the settings name (tests use this).

    Whoever handles SIGTERM calls `lifecycle.drain()` (see `gateway.cli`).
    """
    model_names = served_names(settings)
    model_name = model_names[0]
    loop_lag = LoopLag()
    metrics = Metrics(CollectorRegistry(), model_name, loop_lag)
    lifecycle = lifecycle or Lifecycle(
        settings.shutdown_grace_seconds,
        settings.request_timeout_seconds,
        settings.retry_after_seconds,
    )
    app = _GatewayApp(
        title="trtllm-gateway",
        lifespan=_lifespan(settings, engine, model_names, metrics, lifecycle, loop_lag),
    )
    routers = [router, ui_router()] if settings.ui else [router]
    for each in routers:
        app.include_router(each)
    routes = frozenset(
        getattr(route, "path", "")
        for route in [*app.routes, *(r for x in routers for r in x.routes)]
    )
    table = RouteTable(COMPLETION_ROUTES, PATH_ROUTES)
    _install_middleware(app, settings, metrics.http_requests, routes, table)
    _install_error_handlers(app, table)
    return app


def served_names(settings: Settings) -> tuple[str, ...]:
    """Every name clients may send as `model`, the reported one first."""
    names = settings.served_model_name
    if names is None:
        return (settings.model.name if settings.model else EMBEDDED_NAME,)
    return (names,) if isinstance(names, str) else tuple(dict.fromkeys(names))


class _GatewayApp(FastAPI):
    """FastAPI, handing each HTTP exchange the server's own `send` before any middleware
    wraps it: a stream's body chunks go straight to it (`gateway.http.access_log.Exchange`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        Exchange.open(scope, send)
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The exchange holds the server's send, which holds the scope: left as it is,
            # every request would be cyclic garbage, and full collections under load
            # stopped the loop for 0.3 s at a time.
            Exchange.close(scope)


def _lifespan(
    settings: Settings,
    engine: Engine | None,
    names: tuple[str, ...],  # the served model's, the reported one first
    metrics: Metrics,
    lifecycle: Lifecycle,
    loop_lag: LoopLag,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    model_name = names[0]
    admission = _admission(settings, metrics, model_name, loop_lag)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_dir = await asyncio.to_thread(resolve_model_dir, settings.model, settings.cache_dir)
        running = engine or create_engine(model_dir, settings.engine_settings)
        loop_lag.start()
        # The engine loads (in its worker, as a rule) while the tokenizer does.
        starting = asyncio.create_task(running.start())
        prompts: PromptRenderer | None = None
        try:
            prompts = await asyncio.to_thread(_prompt_renderer, model_dir, settings)
            await starting
            metrics.registry.register(EngineCollector(running.stats, model_name))
            limits = served_limits(running.limits(), settings.max_model_len)
            runner = Runner(
                running, prompts, metrics, settings, names, admission, lifecycle, limits
            )
            app.state.services = Services.of(runner)
            _freeze_startup_objects()
            log.info("serving %s on the %s engine", model_name, running.name)
            yield
        finally:
            starting.cancel()  # the tokenizer failed to load: the engine stops loading
            await asyncio.gather(starting, return_exceptions=True)
            await running.close()
            if prompts is not None:
                prompts.close()
            await loop_lag.stop()

    return lifespan


def _prompt_renderer(model_dir: Path, settings: Settings) -> PromptRenderer:
    return PromptRenderer(model_dir, settings.chat_template, render_workers=settings.render_workers)


# Full collections once per 100 of the middle generation's, not 10 (CPython's default).
# A full collection scans every live request's objects with the loop stopped: with 2048
# streams, about 300k objects and 0.2-0.3 s, which came every 2-3 s under load.
_FULL_COLLECTION_EVERY = 100


def _freeze_startup_objects() -> None:
    """What start-up built (modules, tokenizer, engine) lives as long as the process: out
    of the collector's sight, a full collection stops the loop for about a millisecond
    instead of scanning a few hundred thousand objects (over 100 ms). Full collections
    are made rarer too (`_FULL_COLLECTION_EVERY`)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _FULL_COLLECTION_EVERY)


def _admission(
    settings: Settings, metrics: Metrics, model_name: str, loop_lag: LoopLag
) -> Admission:
    return Admission(
        settings.max_concurrent_requests,
        settings.max_queued_prompt_tokens,
        settings.retry_after_seconds,
        metrics.admission_rejections,
        model_name,
        loop_lag=loop_lag,
        max_loop_lag=settings.max_event_loop_lag_seconds,
    )


def _install_middleware(
    app: FastAPI,
    settings: Settings,
    http_requests: Counter,
    routes: frozenset[str],
    table: RouteTable,
) -> None:
    """Outermost first: request id + metrics + access log, CORS, auth, body limit, then
    the completion routes (`gateway.http.completion_routes`), inside all of them.

    `add_middleware` wraps what is there, so they are added innermost first.
    The observer wraps everything so that even a 401 or 413 carries a request id
    and is logged and counted; CORS answers preflights (no key) before auth.
    """
    app.add_middleware(CompletionRoutes, routes=COMPLETION_ROUTES, path_routes=PATH_ROUTES)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, wires=table.wire)
    digests = api_key_digests(settings)
    if digests:
        open_paths = ["/health", "/ready"] + ([] if settings.metrics_require_key else ["/metrics"])
        open_paths += sorted(ui_paths()) if settings.ui else []
        app.add_middleware(APIKeyAuth, digests=digests, open_paths=open_paths, wires=table.wire)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],  # OpenAI's browser SDK sends several of its own
            expose_headers=["X-Request-Id"],
        )
    app.add_middleware(
        ObserveRequests, counter=http_requests, routes=routes, log_access=settings.access_log
    )


def _install_error_handlers(app: FastAPI, table: RouteTable) -> None:
    """Each error in the shape of the API its path speaks (`table.wire`)."""

    async def gateway_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        return http_response(error, table.wire(request.url.path))

    async def invalid_body(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        wire = table.wire(request.url.path)
        return http_response(InvalidRequest.from_validation(error.errors()), wire)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        wire = table.wire(request.url.path)
        # FastAPI turns what reading the body raises into a 400: BodyLimit's 413 is the cause.
        if isinstance(error.__cause__, GatewayError):
            return http_response(error.__cause__, wire)
        if error.status_code == 404:
            return http_response(RouteNotFound("no such route"), wire)
        if error.status_code == 405:
            response = http_response(MethodNotAllowed("method not allowed on this route"), wire)
        else:
            response = http_response(InvalidRequest(str(error.detail)), wire)
            response.status_code = error.status_code
        response.headers.update(error.headers or {})  # a 405's Allow, which RFC 9110 requires
        return response

    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unhandled error", exc_info=error)
        response = http_response(GatewayError("internal server error"))
        # This handler answers outside every middleware, ObserveRequests' too.
        response.headers["X-Request-Id"] = request_id_of(request.scope)
        return response

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
