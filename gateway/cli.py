"""`trtllm-gateway serve`: settings from flags, environment and YAML, then uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from gateway.config_errors import ConfigError
from gateway.http.access_log import log_bare_json_lines
from gateway.http.app import create_app
from gateway.serving.lifecycle import Lifecycle
from gateway.settings import Settings
from gateway.unix_socket import unix_listener

# Beyond the drain's grace: time for the error events and the engine's close.
_SHUTDOWN_MARGIN_S = 10
_DRAIN_POLL_S = 0.1  # how often the drain looks for requests still in flight, as uvicorn does
# asyncio's own loop, not uvloop: uvloop (libuv >= 1.45) accepts one connection per loop
# iteration, so on a busy loop (tens of ms an iteration) new connections queue for
# seconds: /health on a fresh connection took 7.8 s (p50) with 2048 streams, against
# 126 ms here, where all pending connections are accepted at once and overload gets
# admission's 429 rather than connect timeouts. uvloop's CPU per token was about 20 %
# lower (docs/performance.md).
EVENT_LOOP = "asyncio"


class _DrainingServer(uvicorn.Server):
    """uvicorn, plus: SIGTERM/SIGINT drain the gateway before uvicorn shuts down.

    uvicorn, told to exit, closes its listening sockets and every idle keep-alive
    connection at once: a client would get a refused or reset connection, not the
    503 with Retry-After that tells it to go elsewhere. So the first signal starts
    the drain only (`/ready` 503, new requests 503, running ones ended at the grace)
    and the server keeps listening while any request is in flight, at most the
    grace; then uvicorn shuts down as usual. A second signal shuts down at once.
    """

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace: float) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._grace = grace
        self._drain: asyncio.Task[None] | None = None
        self._signalled = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # The handler runs on the loop's thread, inside its select: call_soon_threadsafe
        # wakes it.
        if self.started and not self._signalled:
            self._signalled = True
            self._captured_signals.append(sig)
            asyncio.get_running_loop().call_soon_threadsafe(self._start_drain)
            return
        with contextlib.suppress(RuntimeError):  # no loop yet: nothing is running to drain
            asyncio.get_running_loop().call_soon_threadsafe(self._lifecycle.drain)
        super().handle_exit(sig, frame)  # loading, or a second signal: shut down now

    def _start_drain(self) -> None:
        self._drain = asyncio.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        self._lifecycle.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace
        while self.server_state.tasks and loop.time() < deadline:  # requests in flight
            await asyncio.sleep(_DRAIN_POLL_S)
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signals it caught once it has stopped; after a
            # completed drain, SIGTERM is a clean exit (status 0), not a death.
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = settings_of(args)
        server = _server(settings)
        sockets = None if settings.uds is None else [unix_listener(settings.uds)]
    except ConfigError as error:  # the same exit status as argparse's usage errors
        print(f"trtllm-gateway: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        server.run(sockets=sockets)
    finally:
        if settings.uds is not None:
            settings.uds.unlink(missing_ok=True)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trtllm-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the OpenAI API",
        description="Flags override GATEWAY_* variables, which override the YAML file.",
    )
    serve.add_argument("--engine", choices=["transformers", "synthetic", "trtllm"])
    serve.add_argument("--model", type=Path, help="a local Hugging Face model directory")
    serve.add_argument(
        "--served-model-name",
        nargs="+",
        metavar="NAME",
        help="the names clients may send as 'model' (aliases); the first is the one reported",
    )
    serve.add_argument(
        "--max-model-len",
        type=int,
        metavar="N",
        help="serve contexts (prompt plus output) of at most N tokens, below the engine's "
        "limit; more than the engine allows stops the start-up",
    )
    serve.add_argument(
        "--uds",
        type=Path,
        metavar="PATH",
        help="listen on this Unix domain socket instead of --host and --port; the file is "
        "created with mode 0o660 (owner and group may connect) and replaces a stale one",
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--api-key", action="append", help="a key clients must send (repeat for several)"
    )
    serve.add_argument("--config", type=Path, help="a YAML settings file (or GATEWAY_CONFIG)")
    return parser


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings.load(
        args.config,
        engine=args.engine,
        model=args.model,
        served_model_name=args.served_model_name,
        max_model_len=args.max_model_len,
        uds=args.uds,
        host=args.host,
        port=args.port,
        api_keys=args.api_key,
    )


def _server(settings: Settings) -> uvicorn.Server:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.access_log:
        log_bare_json_lines()
    lifecycle = Lifecycle(
        settings.shutdown_grace_seconds,
        settings.request_timeout_seconds,
        settings.retry_after_seconds,
    )
    config = uvicorn.Config(
        create_app(settings, lifecycle=lifecycle),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=not settings.access_log,  # ours replaces uvicorn's
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + _SHUTDOWN_MARGIN_S,
        timeout_keep_alive=int(settings.keep_alive_seconds),
        loop=EVENT_LOOP,
    )
    return _DrainingServer(config, lifecycle, settings.shutdown_grace_seconds)
