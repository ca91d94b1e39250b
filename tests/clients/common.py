"""What the client suites share: the served model, tools and schemas small enough for it.

SmolLM2-135M writes well-formed calls and JSON only because a grammar forces
them, so the tools and schemas here are tight (enums, booleans, bounded
integers): whatever the model picks, the output closes within a few tokens.
"""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict

MODEL = "SmolLM2-135M-Instruct"

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
TIME_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "JST"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": TIME_PARAMETERS,
    },
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]
WEATHER_QUESTION = "What is the weather like in Paris today?"


class Weather(BaseModel):
    """The current weather in a city."""

    model_config = ConfigDict(extra="forbid")

    city: Literal["Paris", "London", "Tokyo"]
    unit: Literal["celsius", "fahrenheit"]


class CityFacts(BaseModel):
    """Structured output: a country and whether it is the capital."""

    model_config = ConfigDict(extra="forbid")

    country: Literal["France", "Germany", "Japan"]
    is_capital: bool


CITY_FACTS_SCHEMA: dict[str, Any] = {
    "title": "city_facts",
    "description": "Facts about a city.",
    "type": "object",
    "properties": {
        "country": {"type": "string", "enum": ["France", "Germany", "Japan"]},
        "is_capital": {"type": "boolean"},
    },
    "required": ["country", "is_capital"],
    "additionalProperties": False,
}
CITY_QUESTION = "Paris: which country is it in, and is it the capital?"


def validate(instance: object, schema: dict[str, Any]) -> None:
    """Raises `jsonschema.ValidationError` unless `instance` is valid under `schema`."""
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(instance)
