"""Configuration mistakes, each explained in one message: the setting, what was wrong, a fix.

`Settings.load` raises `ConfigError` for every mistake it can see before anything starts:
a missing config file, YAML that does not parse, a value of the wrong type or range, an
unknown key in the YAML file, and an unknown `GATEWAY_*` variable at any nesting level.
Unknown names are refused rather than warned about, the same way at every level: a
misspelt `GATEWAY_PROT` would otherwise serve on a port nobody chose. `trtllm-gateway
serve` prints the message and exits with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined

ENV_PREFIX = "GATEWAY_"
ENV_NESTING = "__"
CONFIG_VARIABLE = "GATEWAY_CONFIG"


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which, why, and what would work."""


def check_environment(model: type[BaseModel], environ: Mapping[str, str]) -> None:
    """Refuse `GATEWAY_*` variables that name no setting, at any nesting level."""
    known = set(_variable_names(model)) | {CONFIG_VARIABLE}
    unknown = sorted(key for key in environ if key.upper().startswith(ENV_PREFIX))
    unknown = [key for key in unknown if key.upper() not in known]
    if unknown:
        raise ConfigError("\n".join(_unknown_variable(key, known) for key in unknown))


def explain_validation(model: type[BaseModel], error: ValidationError) -> ConfigError:
    """One line per invalid setting, each naming its variable and YAML key and an example."""
    return ConfigError("\n".join(_explain(model, detail) for detail in error.errors()))


def explain_parse_failure(model: type[BaseModel], message: str) -> ConfigError:
    """A `GATEWAY_*` value that pydantic-settings could not decode (a list that is not JSON)."""
    match = re.search(r'field "([^"]+)"', message)
    if match is None:
        return ConfigError(message)
    loc = (match.group(1),)
    return ConfigError(
        f"{_where(loc)}: not a value this setting can take ({message}); "
        f"for example: {_example_assignment(model, loc)}"
    )


def explain_yaml(path: Path, error: yaml.YAMLError) -> ConfigError:
    """Where the YAML file stops parsing, in one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(
        f"config file {path} is not valid YAML: {problem}{at}; for example:\n"
        "  engine: synthetic\n  port: 8000"
    )


def missing_config_file(path: str | Path) -> ConfigError:
    return ConfigError(
        f"config file not found: {path} (from --config or {CONFIG_VARIABLE}); "
        "for example: --config config/synthetic.yaml"
    )


def _explain(model: type[BaseModel], detail: ErrorDetails) -> str:
    loc = tuple(str(part) for part in detail["loc"])
    if detail["type"] == "extra_forbidden":
        return _unknown_key(model, loc)
    setting = loc[: _depth(model, loc)]
    field = _field(model, setting)
    secret = field is not None and "SecretStr" in repr(field.annotation)
    got = "(hidden)" if secret else json.dumps(detail["input"], default=str)
    example = _example_assignment(model, setting)
    return f"{_where(setting)}: {detail['msg']}, got {got}; for example: {example}"


def _unknown_key(model: type[BaseModel], loc: tuple[str, ...]) -> str:
    parent, name = loc[:-1], loc[-1]
    section = _section_model(model, parent)
    known = list(section.model_fields) if section is not None else []
    dotted = ".".join(loc)
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f"; did you mean {'.'.join((*parent, hint[0]))!r}?" if hint else ""
    return f"{dotted!r} is not a setting{suggestion} (README.md, 'Configuration', lists them all)"


def _unknown_variable(key: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(key.upper(), known, n=1)
    suggestion = f"; did you mean {hint[0]}?" if hint else ""
    return f"{key} is not a setting{suggestion} (README.md, 'Configuration', lists them all)"


def _variable_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> Iterable[str]:
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        yield variable
        section = _as_model(field.annotation)
        if section is not None:
            yield from _variable_names(section, variable + ENV_NESTING)


def _where(loc: tuple[str, ...]) -> str:
    variable = ENV_PREFIX + ENV_NESTING.join(loc).upper()
    return f"{'.'.join(loc)} ({variable})"


def _example_assignment(model: type[BaseModel], loc: tuple[str, ...]) -> str:
    field = _field(model, loc)
    example = _example(field) if field is not None else None
    rendered = example if isinstance(example, str) else json.dumps(example)
    variable = ENV_PREFIX + ENV_NESTING.join(loc).upper()
    quoted = f"'{rendered}'" if not isinstance(example, str | int | float) else rendered
    yaml_value = rendered
    for name in reversed(loc[1:]):  # transformers: {dtype: float32}
        yaml_value = f"{{{name}: {yaml_value}}}"
    return f"{variable}={quoted}, or in YAML: {loc[0]}: {yaml_value}"


def _example(field: FieldInfo) -> Any:
    if field.examples:
        return field.examples[0]
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined or default is None:
        return "..."
    return str(default) if isinstance(default, Path) else default


def _field(model: type[BaseModel], loc: tuple[str, ...]) -> FieldInfo | None:
    section = _section_model(model, loc[:-1])
    return section.model_fields.get(loc[-1]) if section is not None and loc else None


def _depth(model: type[BaseModel], loc: tuple[str, ...]) -> int:
    """How many leading parts of `loc` name settings (the rest point inside a value)."""
    for depth in range(len(loc), 0, -1):
        if _field(model, loc[:depth]) is not None:
            return depth
    return len(loc)


def _section_model(model: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for name in path:
        field = current.model_fields.get(name) if current is not None else None
        current = _as_model(field.annotation) if field is not None else None
    return current


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
