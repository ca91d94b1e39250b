"""`trtllm-gateway serve` as operators run it: a configuration mistake is one message, status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli

SERVE = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    return subprocess.run(
        [*SERVE, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--config", "missing.yaml"], {}, "config file not found: missing.yaml"),
        ([], {"GATEWAY_CONFIG": "missing.yaml"}, "config file not found: missing.yaml"),
        ([], {"GATEWAY_PROT": "1"}, "GATEWAY_PROT is not a setting; did you mean GATEWAY_PORT?"),
        ([], {"GATEWAY_API_KEYS": "k1"}, "api_keys (GATEWAY_API_KEYS): not a value"),
        ([], {"GATEWAY_PORT": "http"}, "port (GATEWAY_PORT): Input should be a valid integer"),
        (
            [],
            {"GATEWAY_API_KEY_FILE": "no-such-keys"},
            "api_key_file (GATEWAY_API_KEY_FILE) not found",
        ),
    ],
    ids=["flag", "variable", "unknown", "not-json", "not-int", "key-file"],
)
def test_a_mistake_is_one_message_and_status_2(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = serve(*args, env={"GATEWAY_ENGINE": "synthetic", **env})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("trtllm-gateway: configuration error: ")
    assert message in first
    assert rest == []


def test_broken_yaml_is_one_message(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("engine: synthetic\nport 8000\nhost: [\n")
    result = serve("--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"config file {config} is not valid YAML" in result.stderr
    assert result.stderr.count("configuration error") == 1


def test_the_server_runs_on_asyncios_own_loop() -> None:
    """uvloop accepts one connection per loop iteration: on a busy gateway a probe's new
    connection waited seconds in the accept queue (gateway/cli.py)."""
    built = (
        "from gateway import cli; "
        "args = cli.parser().parse_args(['serve', '--engine', 'synthetic']); "
        "config = cli._server(cli.settings_of(args)).config; config.load(); "
        "factory = config.get_loop_factory(); print(factory.__module__, factory.__name__)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-c", built], env=clean, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["asyncio.unix_events", "_UnixSelectorEventLoop"]


@pytest.mark.parametrize(
    ("env", "seconds"), [({}, 75), ({"GATEWAY_KEEP_ALIVE_SECONDS": "130"}, 130)]
)
def test_idle_connections_outlive_a_load_balancers_idle_timeout(
    env: dict[str, str], seconds: int
) -> None:
    """uvicorn's own 5 s closed connections that balancers still held (the setting's comment)."""
    built = (
        "from gateway import cli; "
        "args = cli.parser().parse_args(['serve', '--engine', 'synthetic']); "
        "print(cli._server(cli.settings_of(args)).config.timeout_keep_alive)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-c", built], env=clean | env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(seconds)]


def test_the_flags_a_vllm_or_trtllm_serve_user_reaches_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.upper().startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    flags = ["serve", "--model", str(tmp_path), "--served-model-name", "llama", "--port", "9001"]
    settings = cli.settings_of(
        cli.parser().parse_args([*flags, "--api-key", "k1", "--api-key", "k2"])
    )
    assert (settings.model, settings.served_model_name) == (tmp_path, ["llama"])
    assert settings.port == 9001
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1", "k2"]


def test_served_model_name_takes_several_names_the_first_reported() -> None:
    args = cli.parser().parse_args(
        ["serve", "--served-model-name", "llama", "gpt-4o", "--port", "1"]
    )
    assert args.served_model_name == ["llama", "gpt-4o"]
    assert cli.parser().parse_args(["serve", "--max-model-len", "4096"]).max_model_len == 4096


def test_a_max_model_len_past_the_engines_stops_the_start_up() -> None:
    """The engine's limit is known once it has loaded: the start-up fails there, saying why."""
    result = serve("--engine", "synthetic", "--max-model-len", "8193", "--port", "0")
    assert result.returncode == 3  # uvicorn's status for a failed start-up
    assert (
        "ConfigError: max_model_len (--max-model-len, GATEWAY_MAX_MODEL_LEN) is 8193, more than "
        "the engine's maximum context length of 8192 tokens; give at most 8192, or leave it "
        "unset to serve the engine's"
    ) in result.stderr
