"""The engine worker process: one engine, driven over the wire by the gateway.

    python -m engines.worker FD

FD is this end of a socket pair whose other end the gateway's `WorkerEngine`
holds. The engine runs on this process's own event loop and interpreter lock;
its output for every request goes to a `_Relay`, and everything the engine
produced in one turn of the loop (one engine step) leaves as one message.

The worker ends when the gateway says close, or when the socket closes because
the gateway died: either way the engine is closed and nothing outlives the
gateway. Ctrl-C in a terminal reaches the whole process group; the worker
ignores it and lets the gateway drain and close it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from engines import EngineSettings, create_engine
from engines.base import Engine, EngineError, Finished, GenerationRequest, TokenLogprob
from engines.worker.wire import (
    HEARTBEAT_SECONDS,
    EncodedError,
    encode_error,
    read_message,
    write_message,
)

log = logging.getLogger(__name__)


class _Outbox:
    """What the engine produced since the last flush; flushed once per loop turn."""

    def __init__(self, engine: Engine, writer: asyncio.StreamWriter) -> None:
        self.tokens: list[tuple[int, list[int], list[TokenLogprob] | None]] = []
        self.finishes: list[tuple[int, Finished]] = []
        self.failures: list[tuple[int, EncodedError]] = []
        self.relays: dict[int, _Relay] = {}  # the requests not yet ended
        self._engine = engine
        self._writer = writer
        self._scheduled = False

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not (self.tokens or self.finishes or self.failures):
            return
        # Stats ride with a step that ended requests: what a finished request did to
        # them (its prefix-cache hits, say) is seen when its response is.
        stats = self._engine.stats() if self.finishes or self.failures else None
        step = (self.tokens, self.finishes, self.failures, self._engine.healthy(), stats)
        write_message(self._writer, ("step", *step))
        self.tokens, self.finishes, self.failures = [], [], []

    def fail_all(self, error: BaseException) -> None:
        for relay in list(self.relays.values()):
            relay.fail(error)

    def send_stats(self) -> None:
        write_message(self._writer, ("stats", self._engine.stats(), self._engine.healthy()))


class _Relay:
    """One request's sink: its output joins the outbox's next message."""

    __slots__ = ("_handle", "_outbox", "abort", "closed")

    def __init__(self, handle: int, outbox: _Outbox) -> None:
        self._handle = handle
        self._outbox = outbox
        self.closed = False
        self.abort: Callable[[], None] | None = None  # the engine's, once it has the request
        outbox.relays[handle] = self

    def put(self, token_ids: Iterable[int], logprobs: Iterable[TokenLogprob] = ()) -> None:
        self._outbox.tokens.append((self._handle, list(token_ids), list(logprobs) or None))
        self._outbox.schedule()

    def finish(self, final: Finished) -> None:
        if self._end():
            self._outbox.finishes.append((self._handle, final))

    def fail(self, error: BaseException) -> None:
        if self._end():
            self._outbox.failures.append((self._handle, encode_error(error)))

    def _end(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        self._outbox.relays.pop(self._handle, None)
        self._outbox.schedule()
        return True


class _Host:
    def __init__(self, engine: Engine, reader: asyncio.StreamReader, outbox: _Outbox) -> None:
        self._engine = engine
        self._reader = reader
        self._outbox = outbox
        self._opening: dict[int, asyncio.Task[None]] = {}

    async def serve(self) -> None:
        """Carry out the gateway's requests until it says close or goes away."""
        heartbeat = asyncio.create_task(self._beat())
        try:
            while True:
                match await read_message(self._reader):
                    case ("submit", int(handle), GenerationRequest() as request):
                        task = asyncio.create_task(self._open(handle, request))
                        self._opening[handle] = task
                    case ("abort", int(handle)):
                        self._abort(handle)
                    case ("close",):
                        return
                    case message:
                        raise EngineError(f"unknown message from the gateway: {message!r}")
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("the gateway went away: closing the engine")
        except Exception as error:  # a bug here: the requests learn why before the exit
            self._outbox.fail_all(EngineError(f"the engine worker failed: {error}"))
            raise
        finally:
            heartbeat.cancel()
            for task in self._opening.values():
                task.cancel()

    async def _open(self, handle: int, request: GenerationRequest) -> None:
        relay = _Relay(handle, self._outbox)
        try:
            relay.abort = await self._engine.open(request, relay)
        except Exception as error:  # the gateway decides what each error means
            relay.fail(error)
        finally:
            self._opening.pop(handle, None)

    def _abort(self, handle: int) -> None:
        opening = self._opening.pop(handle, None)
        if opening is not None:
            opening.cancel()
        relay = self._outbox.relays.pop(handle, None)
        if relay is not None and relay.abort is not None:
            relay.abort()

    async def _beat(self) -> None:
        while True:
            self._outbox.send_stats()
            await asyncio.sleep(HEARTBEAT_SECONDS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when its worker stops
    return asyncio.run(_run(int(args[0])))


async def _run(fd: int) -> int:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    model_dir, settings, log_level = await read_message(reader)
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s [engine worker]: %(message)s"
    )
    try:
        engine = await _start(model_dir, settings)
    except Exception as error:  # told to the gateway, which fails its start-up with it
        log.exception("the engine failed to start")
        write_message(writer, ("failed", f"{type(error).__name__}: {error}"))
        await writer.drain()
        return 1
    write_message(writer, ("ready", engine.name, engine.limits()))
    # As in the gateway: a full collection would otherwise scan everything loading built.
    gc.collect()
    gc.freeze()
    outbox = _Outbox(engine, writer)
    try:
        await _Host(engine, reader, outbox).serve()
    finally:
        await engine.close()
        outbox.flush()  # the aborts that closing wrote
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return 0


async def _start(model_dir: Path, settings: EngineSettings) -> Engine:
    engine = create_engine(model_dir, settings)
    await engine.start()
    return engine
