"""The engine worker's wire: length-prefixed pickled messages over a socket pair.

Each message is a tuple whose first item names it:

    gateway -> worker
        (model_dir, settings, log_level)            first, once
        ("submit", handle, GenerationRequest)
        ("abort", handle)
        ("close",)
    worker -> gateway
        ("ready", engine_name, EngineLimits)        once started, or
        ("failed", message)                         if it could not start
        ("step", tokens, finishes, failures, healthy, EngineStats | None)
        ("stats", EngineStats, healthy)             every HEARTBEAT_SECONDS

A step message carries everything the engine produced in one turn of the worker's
loop: `tokens` is [(handle, token ids, logprobs or None)], `finishes` is
[(handle, Finished)] and `failures` is [(handle, encoded error)]; a handle's
tokens always come before its last word. Pickle is safe here: both ends are the
same program, and nothing else holds the socket pair.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

from engines.base import EngineError, EngineRequestError, PromptTooLong

HEARTBEAT_SECONDS = 0.5

_HEADER = struct.Struct("<I")

EncodedError = tuple[Any, ...]


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message; `asyncio.IncompleteReadError` once the other end has gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def write_message(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(payload)) + payload)


def encode_error(error: BaseException) -> EncodedError:
    """An engine's error as plain data: its class decides the gateway's status code."""
    match error:
        case PromptTooLong():
            return ("prompt_too_long", error.prompt_tokens, error.limit, error.input_limit)
        case EngineRequestError():
            return ("request", str(error))
        case EngineError():
            return ("engine", str(error))
        case _:
            return ("engine", f"{type(error).__name__}: {error}")


def decode_error(encoded: EncodedError) -> EngineError:
    match encoded:
        case ("prompt_too_long", int(prompt_tokens), int(limit), bool(input_limit)):
            return PromptTooLong(prompt_tokens, limit, input_limit=input_limit)
        case ("request", str(message)):
            return EngineRequestError(message)
        case (_, str(message)):
            return EngineError(message)
    return EngineError(f"the engine worker sent an unreadable error: {encoded!r}")
