from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config_errors import ConfigError
from gateway.settings import Settings


def test_yaml_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("engine: synthetic\nport: 9001\nsynthetic:\n  token_seconds: 0.5\n")
    assert Settings.load(config).port == 9001
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    monkeypatch.setenv("GATEWAY_SYNTHETIC__MAX_BATCH_SIZE", "7")
    settings = Settings.load(config)
    assert (settings.engine, settings.port) == ("synthetic", 9002)
    assert settings.synthetic.token_seconds == 0.5
    assert settings.synthetic.max_batch_size == 7
    assert Settings.load(config, port=9003, host=None).port == 9003


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("served_model_name: my-model\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    assert Settings.load().served_model_name == "my-model"


def test_served_model_name_is_one_name_or_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("served_model_name: [llama, gpt-4o]\n")
    assert Settings.load(config).served_model_name == ["llama", "gpt-4o"]
    monkeypatch.setenv("GATEWAY_SERVED_MODEL_NAME", '["a", "b"]')
    assert Settings.load(config).served_model_name == ["a", "b"]
    monkeypatch.setenv("GATEWAY_SERVED_MODEL_NAME", "a")
    assert Settings.load(config).served_model_name == "a"
    monkeypatch.setenv("GATEWAY_SERVED_MODEL_NAME", "[]")
    with pytest.raises(ConfigError, match="served_model_name"):
        Settings.load(config)


def test_engine_settings_is_the_named_section() -> None:
    assert Settings(engine="synthetic").engine_settings == Settings().synthetic


def test_unknown_keys_and_missing_files_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("engnie: synthetic\n")
    with pytest.raises(ConfigError, match="'engnie' is not a setting; did you mean 'engine'"):
        Settings.load(config)
    with pytest.raises(ConfigError, match=r"config file not found: .*missing\.yaml"):
        Settings.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("GATEWAY_PROT", "GATEWAY_PROT is not a setting; did you mean GATEWAY_PORT?"),
        (
            "GATEWAY_SYNTHETIC__TOKEN_SECOND",
            "GATEWAY_SYNTHETIC__TOKEN_SECOND is not a setting; "
            "did you mean GATEWAY_SYNTHETIC__TOKEN_SECONDS?",
        ),
        ("GATEWAY_TRTLLM__NO_SUCH_THING", "GATEWAY_TRTLLM__NO_SUCH_THING is not a setting"),
    ],
)
def test_unknown_variables_are_refused_at_every_level(
    variable: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.load()


def test_known_variables_at_every_level_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TRANSFORMERS__HUB_KERNELS", "true")
    monkeypatch.setenv("GATEWAY_SYNTHETIC", '{"token_seconds": 0.5}')
    settings = Settings.load()
    assert settings.transformers.hub_kernels is True
    assert settings.synthetic.token_seconds == 0.5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "GATEWAY_PORT",
            "70000",
            'port (GATEWAY_PORT): Input should be less than or equal to 65535, got "70000"; '
            "for example: GATEWAY_PORT=8000, or in YAML: port: 8000",
        ),
        (
            "GATEWAY_SYNTHETIC__TOKEN_SECONDS",
            "soon",
            "synthetic.token_seconds (GATEWAY_SYNTHETIC__TOKEN_SECONDS): Input should be a "
            'valid number, unable to parse string as a number, got "soon"; '
            "for example: GATEWAY_SYNTHETIC__TOKEN_SECONDS=0.005",
        ),
        (
            "GATEWAY_API_KEYS",
            "k1",
            "api_keys (GATEWAY_API_KEYS): not a value this setting can take",
        ),
        (
            "GATEWAY_ENGINE",
            "tensorrt",
            "engine (GATEWAY_ENGINE): Input should be 'transformers', 'synthetic' or 'trtllm'",
        ),
    ],
)
def test_wrong_values_name_the_setting_and_a_right_value(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.load()


def test_a_list_setting_shows_a_json_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", "k1")
    with pytest.raises(ConfigError) as error:
        Settings.load()
    assert 'GATEWAY_API_KEYS=\'["key-1", "key-2"]\'' in str(error.value)
    assert "k1" not in str(error.value).split("got")[-1]


def test_secret_values_stay_out_of_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", '[["not-a-string-secret"]]')
    with pytest.raises(ConfigError) as error:
        Settings.load()
    assert "not-a-string-secret" not in str(error.value)
    assert "api_keys (GATEWAY_API_KEYS)" in str(error.value)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("engine: synthetic\nport: [8000\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML: .* at line 3, column 1"):
        Settings.load(config)


CONFIGS = sorted((Path(__file__).parents[2] / "config").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_load(config: Path) -> None:
    assert Settings.load(config).engine in ("transformers", "synthetic", "trtllm")
