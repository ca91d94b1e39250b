from __future__ import annotations

import asyncio
import socket

import pytest

from engines.base import EngineError, EngineRequestError, PromptTooLong
from engines.worker.wire import decode_error, encode_error, read_message, write_message


@pytest.mark.parametrize(
    "error",
    [
        PromptTooLong(900, 512, input_limit=True),
        EngineRequestError("the prompt is empty"),
        EngineError("the manager thread died"),
    ],
)
def test_engine_errors_keep_their_class_and_fields(error: EngineError) -> None:
    decoded = decode_error(encode_error(error))
    assert type(decoded) is type(error)
    assert str(decoded) == str(error)
    assert vars(decoded) == vars(error)


def test_any_other_exception_becomes_an_engine_error_naming_its_type() -> None:
    decoded = decode_error(encode_error(KeyError("slot")))
    assert type(decoded) is EngineError
    assert str(decoded) == "KeyError: 'slot'"


async def test_messages_arrive_whole_and_in_order_however_the_stream_splits_them() -> None:
    ours, theirs = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=ours)
    far_reader, far_writer = await asyncio.open_connection(sock=theirs)
    big = ("step", [(i, list(range(50)), None) for i in range(2000)])  # past one socket buffer
    for message in [("ready", "synthetic"), big, ("close",)]:
        write_message(writer, message)
    assert await read_message(far_reader) == ("ready", "synthetic")
    assert await read_message(far_reader) == big
    assert await read_message(far_reader) == ("close",)
    writer.close()
    with pytest.raises(asyncio.IncompleteReadError):
        await read_message(far_reader)
    far_writer.close()
