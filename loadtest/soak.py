"""A bounded soak: mixed traffic against a gateway it starts itself; reports errors and RSS.

    python loadtest/soak.py                         # 3 minutes, synthetic engine, 64 clients
    python loadtest/soak.py --minutes 10 --engine transformers --concurrency 8

Each client loops over a mix of requests: streams read to the end, streams
abandoned midway (disconnects), non-streamed completions, stop strings, and
invalid requests that must get a 400. It samples the server's RSS every few
seconds and ends by checking that the engine is idle again. Exit status 1 if
any request failed unexpectedly or the engine did not return to idle.

This file has no locust User classes: `locust -f loadtest/` ignores it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

MODEL = "SmolLM2-135M-Instruct"
MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def start_server(engine: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEWAY_ENGINE": engine, "GATEWAY_LOG_LEVEL": "warning"}
    command = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]
    return subprocess.Popen([*command, "--port", str(port)], env=env)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def one_request(client: httpx.AsyncClient, rng: random.Random) -> str:
    """One request of the mix; returns its outcome label."""
    kind = rng.choice(["stream", "stream", "abandon", "complete", "stop", "invalid"])
    body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
    if kind == "invalid":
        body["max_tokens"] = 0
        response = await client.post("/v1/chat/completions", json=body)
        return "invalid:ok" if response.status_code == 400 else f"invalid:{response.status_code}"
    if kind == "stop":
        body["stop"] = [" the", "\n"]
    if kind in ("complete", "stop"):
        response = await client.post("/v1/chat/completions", json=body)
        return f"{kind}:{'ok' if response.status_code == 200 else response.status_code}"
    body["stream"] = True
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            return f"{kind}:{response.status_code}"
        lines = 0
        async for line in response.aiter_lines():
            lines += 1
            if kind == "abandon" and lines > 6:
                return "abandon:ok"
            if '"error"' in line:
                return f"{kind}:error-event"
    return f"{kind}:ok"


async def client_loop(url: str, until: float, seed: int, outcomes: Counter[str]) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            try:
                outcomes[await one_request(client, rng)] += 1
            except httpx.HTTPError as error:
                outcomes[f"transport:{type(error).__name__}"] += 1


async def sample_rss(pid: int, until: float, samples: list[float]) -> None:
    while time.monotonic() < until:
        samples.append(rss_mib(pid))
        await asyncio.sleep(5)


async def soak(url: str, pid: int, args: argparse.Namespace) -> tuple[Counter[str], list[float]]:
    until = time.monotonic() + args.minutes * 60
    outcomes: Counter[str] = Counter()
    samples: list[float] = []
    clients = [client_loop(url, until, seed, outcomes) for seed in range(args.concurrency)]
    await asyncio.gather(sample_rss(pid, until, samples), *clients)
    return outcomes, samples


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the gateway did not become ready")


def idle_gauges(url: str) -> dict[str, float]:
    """The engine gauges, after giving aborted requests a moment to leave the engine."""
    time.sleep(2)
    gauges = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(("gateway_num_requests_", "gateway_kv_cache_usage_perc")):
            gauges[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return gauges


def report(outcomes: Counter[str], samples: list[float], gauges: dict[str, float]) -> bool:
    failures = {k: n for k, n in outcomes.items() if not k.endswith(":ok")}
    print(f"requests: {sum(outcomes.values())}  by outcome: {dict(sorted(outcomes.items()))}")
    print(f"unexpected: {failures or 'none'}")
    first, last, peak = samples[0], samples[-1], max(samples)
    growth = last - first
    print(f"RSS MiB: first {first:.0f}, last {last:.0f}, peak {peak:.0f}, growth {growth:+.0f}")
    print(f"engine after the soak: {gauges}")
    queues = ("gateway_num_requests_running", "gateway_num_requests_waiting")
    return not failures and not any(gauges.get(name, 1) for name in queues)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", default="synthetic", choices=["synthetic", "transformers"])
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = start_server(args.engine, port)
    try:
        wait_ready(url, process)
        outcomes, samples = asyncio.run(soak(url, process.pid, args))
        healthy = report(outcomes, samples, idle_gauges(url))
    finally:
        process.terminate()
        process.wait(60)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
