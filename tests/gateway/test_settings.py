from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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


def test_engine_settings_is_the_named_section() -> None:
    assert Settings(engine="synthetic").engine_settings == Settings().synthetic


def test_unknown_keys_and_missing_files_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("engnie: synthetic\n")
    with pytest.raises(ValidationError):
        Settings.load(config)
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "missing.yaml")


CONFIGS = sorted((Path(__file__).parents[2] / "config").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_load(config: Path) -> None:
    assert Settings.load(config).engine in ("transformers", "synthetic", "trtllm")
