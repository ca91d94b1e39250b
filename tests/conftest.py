"""Shared fixtures: the real tokenizer files, and live gateways on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from engines.settings import SyntheticSettings, TransformersSettings, TrtllmSettings
from gateway.http.app import create_app
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.model_files import resolve_model_dir
from gateway.settings import Settings
from tests.engines.trtllm.standin import StandinConfig, installed


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded SmolLM2 as a Hugging Face directory (converted once, then cached)."""
    return resolve_model_dir(None, Settings().cache_dir)


class LiveServer:
    """A real uvicorn serving the gateway on 127.0.0.1 in a thread of its own."""

    def __init__(self, settings: Settings, send_buffer: int | None = None) -> None:
        self.lifecycle = Lifecycle(
            settings.shutdown_grace_seconds, settings.request_timeout_seconds
        )
        app = create_app(settings, lifecycle=self.lifecycle)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        listener = socket.socket()
        if send_buffer is not None:  # accepted connections inherit it: backpressure sooner
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        listener.bind(("127.0.0.1", 0))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listener]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server failed to start")
            self.thread.join(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def drain(self) -> None:
        """What SIGTERM does to the gateway (the CLI's server calls the same)."""
        self.server.servers[0].get_loop().call_soon_threadsafe(self.lifecycle.drain)

    def wait_idle(self, seconds: float, why: str) -> None:
        """Until the engine runs nothing; `why` fails the test if it still does after `seconds`."""
        deadline = time.monotonic() + seconds
        while self.metric("gateway_num_requests_running") != 0:
            assert time.monotonic() < deadline, why
            time.sleep(0.02)

    def metric(self, name: str, **labels: str) -> float:
        """One metric's value now, e.g. `gateway_num_requests_running` (see `Scrape.value`)."""
        return self.scrape().value(name, **labels)

    def scrape(self) -> Scrape:
        return Scrape(httpx.get(f"{self.url}/metrics").text)


class Scrape:
    """One reading of /metrics, parsed by prometheus_client: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` (`..._total`, `..._count`, `..._sum`) whose
        labels include `labels`; a KeyError if there is none, so a misspelling fails."""
        values = [
            value
            for sample, have, value in self.samples
            if sample == name and labels.items() <= have.items()
        ]
        if not values:
            raise KeyError(f"{name} {labels}")
        return sum(values)

    def growth(self, before: Scrape, name: str, **labels: str) -> float:
        """How much `value(name, **labels)` grew since `before`."""
        return self.value(name, **labels) - before.value(name, **labels)


def serve(settings: Settings, send_buffer: int | None = None) -> Iterator[LiveServer]:
    with LiveServer(settings, send_buffer) as server:
        yield server


# The conformance suite runs against every engine; the model's cases are marked.
ENGINE_SETTINGS = {
    "synthetic": lambda: Settings(
        engine="synthetic", synthetic=SyntheticSettings(token_seconds=0.001, max_seq_len=512)
    ),
    "transformers": lambda: Settings(
        engine="transformers", transformers=TransformersSettings(max_seq_len=512)
    ),
}


@pytest.fixture(scope="session")
def synthetic_gateway() -> Iterator[LiveServer]:
    yield from serve(ENGINE_SETTINGS["synthetic"]())


@pytest.fixture(scope="session")
def transformers_gateway() -> Iterator[LiveServer]:
    yield from serve(ENGINE_SETTINGS["transformers"]())


@pytest.fixture(scope="session")
def trtllm_gateway(model_dir: Path) -> Iterator[LiveServer]:
    """The TensorRT-LLM engine over the `tensorrt_llm` stand-in, with SmolLM2's tokenizer."""
    settings = Settings(engine="trtllm", model=model_dir, trtllm=TrtllmSettings(max_seq_len=512))
    with installed(StandinConfig()):
        yield from serve(settings)


@pytest.fixture(
    scope="session",
    params=["synthetic", "trtllm", pytest.param("transformers", marks=pytest.mark.model)],
)
def gateway(request: pytest.FixtureRequest) -> LiveServer:
    """The conformance suite's gateway: one per engine, shared by the whole session."""
    server: LiveServer = request.getfixturevalue(f"{request.param}_gateway")
    return server
