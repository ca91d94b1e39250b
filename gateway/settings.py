"""Every setting, from (highest first) CLI flags, `GATEWAY_*` variables, a YAML file.

GATEWAY_ENGINE=synthetic GATEWAY_SYNTHETIC__TOKEN_SECONDS=0.01 trtllm-gateway serve
trtllm-gateway serve --config config/llama-3.1-8b-fp8-h100.yaml --port 9000
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from engines.settings import SyntheticSettings, TransformersSettings, TrtllmSettings

EngineName = Literal["transformers", "synthetic", "trtllm"]


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trtllm-gateway"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    engine: EngineName = "transformers"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # A local Hugging Face model directory (weights for the embedded engine,
    # always the tokenizer and chat template). None: the embedded SmolLM2.
    model: Path | None = None
    served_model_name: str | None = None  # None: the model directory's name
    chat_template: Path | None = None  # a Jinja file that overrides the model's
    cache_dir: Path = Field(default_factory=_default_cache_dir)

    # A max_tokens past the context left is clamped to it; strict mode rejects it.
    strict_max_tokens: bool = False
    max_stop_strings: PositiveInt = 16

    transformers: TransformersSettings = TransformersSettings()
    synthetic: SyntheticSettings = SyntheticSettings()
    trtllm: TrtllmSettings = TrtllmSettings()

    @property
    def engine_settings(self) -> TransformersSettings | SyntheticSettings | TrtllmSettings:
        """The section of the engine that `engine` names."""
        section: TransformersSettings | SyntheticSettings | TrtllmSettings = getattr(
            self, self.engine
        )
        return section

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from a YAML file (or `GATEWAY_CONFIG`), the environment and `overrides`."""
        path = config_file or os.environ.get("GATEWAY_CONFIG")
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"config file not found: {path}")

        class _WithFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                sources = [init_settings, env_settings]
                if path is not None:
                    sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
                return tuple(sources)

        return _WithFile(**{k: v for k, v in overrides.items() if v is not None})
