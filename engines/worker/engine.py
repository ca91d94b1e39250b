"""An engine in a worker process of its own, behind the same contract.

    engine = WorkerEngine(model_dir, TransformersSettings())   # what create_engine does
    await engine.start()        # spawns `python -m engines.worker`, waits for "ready"

The engine and the gateway then each have their own interpreter lock: the
engine's step loop never waits for the gateway's event loop, nor the other way
round. One message per engine step (engines/worker/wire.py) reaches the sink of
every request that advanced, as an engine in-process would put to them in its
step.

Faults end every open request with an `EngineError` and turn `healthy()` false,
so that `/health` and `/ready` answer 503 and an orchestrator restarts the pod:
the worker exits or is killed, or says nothing (not even its heartbeat) for
`silence_limit` seconds, in which case it is killed too.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from engines.base import (
    EngineError,
    EngineLimits,
    EngineStats,
    Finished,
    GenerationRequest,
    Sink,
    TokenLogprob,
)
from engines.settings import SyntheticSettings, TransformersSettings
from engines.worker.wire import (
    HEARTBEAT_SECONDS,
    EncodedError,
    decode_error,
    read_message,
    write_message,
)

log = logging.getLogger(__name__)

SILENCE_LIMIT_SECONDS = 5.0  # ten heartbeats missed
_STOP_TIMEOUT_SECONDS = 30.0


class WorkerEngine:
    def __init__(
        self,
        model_dir: Path,
        settings: SyntheticSettings | TransformersSettings,
        *,
        silence_limit: float = SILENCE_LIMIT_SECONDS,
    ) -> None:
        self._model_dir = model_dir
        self._settings = settings.model_copy(update={"worker": False})  # what the worker runs
        self._silence_limit = silence_limit
        self._name = "worker"
        self._limits: EngineLimits | None = None
        self._stats = EngineStats()
        self._engine_healthy = False
        self._fatal: EngineError | None = None
        self._closed = False
        self._live: dict[int, Sink] = {}
        self._handles = itertools.count()
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._heard_at = 0.0

    @property
    def name(self) -> str:
        return self._name

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engines.worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        reader, self._writer = await asyncio.open_connection(sock=ours)
        level = logging.getLogger().getEffectiveLevel()
        write_message(self._writer, (self._model_dir, self._settings, level))
        try:
            self._name, self._limits = await self._await_ready(reader)
        except BaseException:  # failed, or cancelled while the model loads: no orphan
            await self._kill()
            self._writer.close()
            self._writer = None  # `close` has nothing left to tell it
            raise
        self._engine_healthy = True
        self._heard_at = asyncio.get_running_loop().time()
        self._tasks = [asyncio.create_task(self._read(reader)), asyncio.create_task(self._watch())]
        log.info("engine worker %d is serving the %s engine", self._process.pid, self._name)

    @staticmethod
    async def _await_ready(reader: asyncio.StreamReader) -> tuple[str, EngineLimits]:
        try:
            ready = await read_message(reader)
        except asyncio.IncompleteReadError:
            raise EngineError("the engine worker exited during start-up") from None
        match ready:
            case ("ready", str(name), EngineLimits() as limits):
                return name, limits
            case ("failed", str(message)):
                raise EngineError(f"the engine worker could not start: {message}")
        raise EngineError(f"the engine worker answered {ready!r} at start-up")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._fatal is None:
            write_message(self._writer, ("close",))
        process = self._process
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error("the engine worker did not stop in %.0f s: killed", _STOP_TIMEOUT_SECONDS)
                await self._kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_all(EngineError("the engine closed"))
        if self._writer is not None:
            self._writer.close()

    def healthy(self) -> bool:
        return self._fatal is None and self._engine_healthy and not self._closed

    def limits(self) -> EngineLimits:
        if self._limits is None:
            raise EngineError("the engine worker is not started")
        return self._limits

    def stats(self) -> EngineStats:
        return self._stats

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        writer = self._writer
        if writer is None or self._fatal is not None or self._closed:
            raise EngineError(str(self._fatal or "the engine worker is not running"))
        handle = next(self._handles)
        self._live[handle] = sink
        write_message(writer, ("submit", handle, request))
        return functools.partial(self._abandon, handle)

    def _abandon(self, handle: int) -> None:
        """The consumer left early: the worker aborts the request in its engine."""
        writer = self._writer
        if self._live.pop(handle, None) is None or writer is None:
            return
        if self._fatal is None and not self._closed:
            write_message(writer, ("abort", handle))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await read_message(reader)
                self._heard_at = loop.time()
                match message:
                    case ("step", tokens, finishes, failures, bool(healthy), stats):
                        self._on_step(tokens, finishes, failures, healthy, stats)
                    case ("stats", EngineStats() as stats, bool(healthy)):
                        self._stats, self._engine_healthy = stats, healthy
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self._closed:
                self._die(f"the engine worker exited ({await self._exit_status()})")

    def _on_step(
        self,
        tokens: list[tuple[int, list[int], list[TokenLogprob] | None]],
        finishes: list[tuple[int, Finished]],
        failures: list[tuple[int, EncodedError]],
        healthy: bool,
        stats: EngineStats | None,
    ) -> None:
        """One "step" message's items (engines/worker/wire.py) into the requests' sinks."""
        self._engine_healthy = healthy  # before the failures, which it explains
        if stats is not None:
            self._stats = stats
        live = self._live
        for handle, token_ids, logprobs in tokens:
            sink = live.get(handle)
            if sink is not None:
                sink.put(token_ids, logprobs or ())
        for handle, final in finishes:
            sink = live.pop(handle, None)
            if sink is not None:
                sink.finish(final)
        for handle, error in failures:
            sink = live.pop(handle, None)
            if sink is not None:
                sink.fail(decode_error(error))

    async def _watch(self) -> None:
        """Kill a worker that says nothing, not even its heartbeat, for too long."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(HEARTBEAT_SECONDS, self._silence_limit / 4))
            silent = loop.time() - self._heard_at
            if silent > self._silence_limit:
                self._die(f"the engine worker stopped answering ({silent:.1f} s silent)")
                await self._kill()
                return

    def _die(self, message: str) -> None:
        if self._fatal is None:
            log.error("%s: failing %d open requests", message, len(self._live))
            self._fatal = EngineError(message)
            self._fail_all(self._fatal)

    def _fail_all(self, error: EngineError) -> None:
        live, self._live = self._live, {}
        for sink in live.values():
            sink.fail(error)

    async def _exit_status(self) -> str:
        """How the worker ended, once it has (it closes its socket as it dies)."""
        process = self._process
        if process is None:
            return "never started"
        try:
            code = await asyncio.wait_for(process.wait(), 1.0)
        except TimeoutError:
            return "its connection closed"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    async def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
