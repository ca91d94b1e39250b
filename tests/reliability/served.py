"""A real `trtllm-gateway serve` process on loopback, for the tests that signal or kill it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

Served = tuple[subprocess.Popen[bytes], str]  # the process, its base URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(env: Mapping[str, str], *, uds: Path | None = None) -> Iterator[Served]:
    """The gateway with `env` over this environment, once `/ready`; killed at the end.

    On loopback TCP, or on the Unix socket `uds` (then the URL's host is a placeholder:
    clients need `httpx.HTTPTransport(uds=...)`)."""
    if uds is None:
        port = free_port()
        listen, url = ["--port", str(port)], f"http://127.0.0.1:{port}"
    else:
        listen, url = ["--uds", str(uds)], "http://gateway"
    command = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]
    process = subprocess.Popen([*command, *listen], env={**os.environ, **env})
    transport = None if uds is None else httpx.HTTPTransport(uds=str(uds))
    try:
        with httpx.Client(base_url=url, transport=transport) as probe:
            deadline = time.monotonic() + 60
            while not (_listening(uds) and _ready(probe)):
                assert process.poll() is None and time.monotonic() < deadline, "no start"
                time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _listening(uds: Path | None) -> bool:
    """Whether the socket takes connections yet: httpx leaks the socket of a refused
    Unix-socket connection (a ResourceWarning), and the gateway binds it before it listens."""
    if uds is None:
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(str(uds)) == 0


def _ready(probe: httpx.Client) -> bool:
    try:
        return probe.get("/ready").status_code == 200
    except httpx.TransportError:
        return False
