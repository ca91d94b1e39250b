"""`--uds`: the gateway on a Unix domain socket, as a sidecar reaches it."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway import cli
from gateway.config_errors import ConfigError
from gateway.unix_socket import unix_listener
from tests.reliability.served import served

MODEL = "SmolLM2-135M-Instruct"
SERVE = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]


def stale_socket(path: Path) -> None:
    """What a gateway that was killed leaves: a socket file nothing listens on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))


@pytest.fixture
def umask_0() -> Iterator[None]:
    """The most permissive umask: the socket's mode must not depend on it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_a_sidecar_reaches_the_gateway_on_its_socket(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    stale_socket(path)
    with served({"GATEWAY_ENGINE": "synthetic"}, uds=path) as (process, url):
        assert stat.S_IMODE(path.lstat().st_mode) == 0o660
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(base_url=url, transport=transport) as client:
            assert client.get("/health").json() == {"status": "ok"}
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="x", http_client=client)
            chat = sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            assert chat.choices[0].finish_reason == "length"
            assert chat.usage is not None and chat.usage.completion_tokens == 3
            again = subprocess.run(
                [*SERVE, "--engine", "synthetic", "--uds", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert again.returncode == 2
            assert again.stderr == (
                f"trtllm-gateway: configuration error: uds {path}: another server is "
                "listening on it\n"
            )
            assert client.get("/health").status_code == 200  # still its socket
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert not path.exists()


def test_the_socket_is_created_for_owner_and_group_whatever_the_umask(
    tmp_path: Path, umask_0: None
) -> None:
    path = tmp_path / "gateway.sock"
    with unix_listener(path):
        assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    assert os.umask(0) == 0  # the umask is given back


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    stale_socket(path)
    with unix_listener(path) as listener:
        listener.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # the new socket, not the dead one


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    path.write_text("data")
    with pytest.raises(ConfigError) as caught:
        unix_listener(path)
    assert str(caught.value) == f"uds {path} exists and is not a socket; give a free path"
    assert path.read_text() == "data"


def test_a_path_that_cannot_be_bound_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "missing-directory" / "gateway.sock"
    with pytest.raises(ConfigError) as caught:
        unix_listener(path)
    assert str(caught.value) == f"uds {path}: cannot listen there: No such file or directory"


def test_the_flag_names_the_setting(tmp_path: Path) -> None:
    args = cli.parser().parse_args(["serve", "--uds", str(tmp_path / "g.sock")])
    assert cli.settings_of(args).uds == tmp_path / "g.sock"
