"""Every setting, from (highest first) CLI flags, `GATEWAY_*` variables, a YAML file.

GATEWAY_ENGINE=synthetic GATEWAY_SYNTHETIC__TOKEN_SECONDS=0.01 trtllm-gateway serve
trtllm-gateway serve --config config/llama-3.1-8b-fp8-h100.yaml --port 9000
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from engines.settings import SyntheticSettings, TransformersSettings, TrtllmSettings
from gateway.config_errors import (
    CONFIG_VARIABLE,
    check_environment,
    explain_parse_failure,
    explain_validation,
    explain_yaml,
    missing_config_file,
)

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
    # A Unix domain socket to listen on instead of host and port (gateway/unix_socket.py).
    uds: Path | None = Field(default=None, examples=["/run/gateway/gateway.sock"])
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # A local Hugging Face model directory (weights for the embedded engine,
    # always the tokenizer and chat template). None: the embedded SmolLM2.
    model: Path | None = Field(default=None, examples=["/models/Llama-3.1-8B-Instruct"])
    # The names clients may send as `model`: one, or several (aliases), the first being the
    # one reported in metrics. None: the model directory's name.
    served_model_name: str | Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, examples=["llama-3.1-8b", ["llama-3.1-8b", "gpt-4o"]]
    )
    # A Jinja file that overrides the model's
    chat_template: Path | None = Field(default=None, examples=["/models/template.jinja"])
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Processes that render long prompts, so that a burst of them uses every core; 0: threads.
    render_workers: int = Field(default=0, ge=0)

    # The context (prompt plus output) served, below what the engine allows: a smaller one
    # bounds each request's KV cache. None: the engine's. Past the engine's, no start.
    max_model_len: PositiveInt | None = Field(default=None, examples=[8192])
    # A max_tokens past the context left is clamped to it; strict mode rejects it.
    strict_max_tokens: bool = False

    # Request limits: past them, 400 (413 for the body).
    max_body_bytes: PositiveInt = 8 * 1024 * 1024
    max_messages: PositiveInt = 1024
    max_prompt_chars: PositiveInt = 1_000_000  # all messages' text together
    max_stop_strings: PositiveInt = 16
    max_stop_chars: PositiveInt = 256  # each stop string
    max_logprobs: int = Field(default=20, ge=0)  # top_logprobs per token (OpenAI's own cap)
    max_choices: PositiveInt = 16  # n
    max_prompts: PositiveInt = 64  # prompts in one text completion request

    # Stored responses (`/v1/responses` with `store`), kept in memory only: a restart
    # loses them. Past either bound the oldest go first.
    stored_responses: int = Field(default=10_000, ge=0)
    stored_response_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    # How this model writes tool calls and reasoning (gateway/text/tool_parsers.py and
    # gateway/text/reasoning.py). A template without tool support gets the tools from a
    # system prompt in this format.
    tool_parser: Literal["hermes", "llama3_json", "mistral"] = "hermes"
    reasoning_parser: Literal["think"] | None = None  # None: output has no reasoning part

    # Admission control: past either bound, 429 with Retry-After.
    max_concurrent_requests: PositiveInt = 2048  # admitted and not yet finished
    max_queued_prompt_tokens: PositiveInt = 2_000_000  # admitted, no first token yet
    retry_after_seconds: PositiveInt = 1
    # The gateway's own saturation: past this event loop lag, new requests get 429 so
    # that running streams and health probes keep a loop that answers. None: no bound.
    max_event_loop_lag_seconds: PositiveFloat | None = 0.25

    # Time: a request past its deadline ends (504); SIGTERM stops new requests at once
    # and gives those in flight this long before they end with an error event.
    request_timeout_seconds: PositiveFloat | None = 600.0
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    sse_keepalive_seconds: PositiveFloat = 15.0  # comments keep proxies from cutting prefill
    # An idle HTTP connection is closed after this long. Keep it longer than the idle
    # timeout of any load balancer in front (AWS ALB: 60 s), or the balancer may send a
    # request on a connection the gateway is closing (uvicorn's own default is 5 s).
    keep_alive_seconds: PositiveFloat = 75.0
    send_timeout_seconds: PositiveFloat = 30.0  # a client that reads nothing this long is dropped

    # Security. Keys come from here (GATEWAY_API_KEYS='["k1","k2"]') and from a file
    # (one per line); none configured means no authentication.
    api_keys: list[SecretStr] = Field(default=[], examples=[["key-1", "key-2"]])
    api_key_file: Path | None = Field(default=None, examples=["/run/secrets/gateway-keys"])
    metrics_require_key: bool = True  # false: /metrics open to scrapers without a key
    # Empty: no CORS headers at all.
    cors_allow_origins: list[str] = Field(default=[], examples=[["https://chat.example.com"]])
    access_log: bool = True  # one JSON line per request; never prompts or outputs
    # The playground (/ui/) and live dashboard (/ui/stats), served without a key (the APIs
    # they call still need one). Off: neither page, and / is a 404.
    ui: bool = True

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
        """Settings from a YAML file (or `GATEWAY_CONFIG`), the environment and `overrides`.

        Every mistake is a `ConfigError` that names the setting and a right value.
        """
        path = config_file or os.environ.get(CONFIG_VARIABLE)
        if path is not None and not Path(path).is_file():
            raise missing_config_file(path)
        check_environment(cls, os.environ)

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

        try:
            return _WithFile(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as error:
            raise explain_validation(cls, error) from None
        except SettingsError as error:
            raise explain_parse_failure(cls, str(error)) from None
        except yaml.YAMLError as error:
            raise explain_yaml(Path(str(path)), error) from None
