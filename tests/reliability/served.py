"""A real `trtllm-gateway serve` process on loopback, for the tests that signal or kill it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

import httpx

Served = tuple[subprocess.Popen[bytes], str]  # the process, its base URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(env: Mapping[str, str]) -> Iterator[Served]:
    """The gateway with `env` over this environment, once `/ready`; killed at the end."""
    port = free_port()
    command = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]
    process = subprocess.Popen([*command, "--port", str(port)], env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, "no start"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready").status_code == 200
    except httpx.TransportError:
        return False
