"""Servers under test as child processes: started, waited for, measured from /proc, stopped.

The server runs in its own process so that its CPU time is the kernel's own
account (`utime + stime` of every thread, from /proc/<pid>/stat), not an
estimate, and so that the load generators cannot borrow its interpreter. The
processes it starts (the engine worker) are read the same way, apart.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eEinfNa]+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of every thread of `pid` so far (clock-tick resolution)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def children_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU so far of each child process of `pid` (the engine worker), read as `cpu_seconds`
    reads `pid`'s: {child pid: seconds}. Children that ended meanwhile are left out."""
    children: dict[int, float] = {}
    # The kernel lists a child under the thread that started it, which need not be the
    # main thread: every thread's list is read.
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids = [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
        for child in pids:
            try:
                children[child] = cpu_seconds(child)
            except OSError:  # the child ended meanwhile
                continue
    return children


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """CPU so far of each thread of `pid`: {thread id: (thread name, seconds)}."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        threads[int(task.name)] = (name, _stat_cpu_seconds(stat))
    return threads


def _stat_cpu_seconds(stat: str) -> float:
    """utime + stime from the text of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ", from `state` on
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all CPUs have spent not idle so far (/proc/stat), every process included."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS  # guest time is already in user


class ServerProcess:
    """A server command run as a child, logging to a file; a context manager."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/health",
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._command = list(command)
        self._env = {**os.environ, **(env or {})}
        self._ready_path = ready_path
        self.log_path = ""  # the server's stdout and stderr, once started
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout: float = 180.0) -> None:
        log, self.log_path = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        try:
            self._process = subprocess.Popen(
                self._command, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            os.close(log)  # the child has its own descriptor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            if self.get(self._ready_path, timeout=2.0)[0] == 200:
                return
            time.sleep(0.2)
        self.stop(keep_log=True)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """The server process's own CPU so far, its children's apart (`children_cpu_seconds`)."""
        return cpu_seconds(self.pid)

    def children_cpu_seconds(self) -> dict[int, float]:
        return children_cpu_seconds(self.pid)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            return 0, ""  # not listening yet, or gone

    def metrics(self, timeout: float = 10.0) -> dict[str, float]:
        """Prometheus samples by name, summed over their labels."""
        status, text = self.get("/metrics", timeout)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET /metrics answered {status}")
        samples: dict[str, float] = {}
        for name, _, value in _SAMPLE.findall(text):
            samples[name] = samples.get(name, 0.0) + float(value)
        return samples

    def stop(self, keep_log: bool = False) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not keep_log and process.returncode in (0, -signal.SIGTERM):  # nothing to read
            Path(self.log_path).unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_idle(server: ServerProcess, timeout: float = 60.0) -> None:
    """Until the engine has nothing running or waiting (a level's leftovers are gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = server.metrics()
        busy = metrics.get("gateway_num_requests_running", 0.0)
        busy += metrics.get("gateway_num_requests_waiting", 0.0)
        if not busy:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{server.name} still has requests running {timeout:.0f} s after the load")


def gateway(engine: str, env: Mapping[str, str] | None = None, name: str = "") -> ServerProcess:
    """`trtllm-gateway serve` on a free loopback port, exactly as an operator starts it;
    `name` (default: gateway-<engine>) tells its log and its failures apart."""
    port = free_port()
    script = shutil.which("trtllm-gateway", path=str(Path(sys.executable).parent))
    fallback = [sys.executable, "-c", "from gateway.cli import main; main()"]
    launcher = [script] if script else fallback
    command = [*launcher, "serve", "--engine", engine, "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(name or f"gateway-{engine}", command, port, env, ready_path="/ready")


def floor(token_seconds: float, prefill_seconds: float = 0.0) -> ServerProcess:
    """The transport floor (bench/floor.py) on a free loopback port, in a process of its own
    as the gateway is, so that its CPU is read from /proc the same way."""
    port = free_port()
    command = [
        sys.executable, "-m", "bench.floor", "--port", str(port),
        "--token-seconds", str(token_seconds), "--prefill-seconds", str(prefill_seconds),
    ]  # fmt: skip
    # The child imports `bench` from this checkout, wherever the harness was started.
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return ServerProcess("floor", command, port, {"PYTHONPATH": path})
