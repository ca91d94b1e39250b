"""Stored responses: what `previous_response_id` and `GET /v1/responses/{id}` find.

In memory, bounded in count and in bytes (the JSON of each record), oldest
evicted first; a restart loses them all. Each record holds its whole
conversation (the input items of every response before it, then its own input
and output), so a chain survives the eviction of its earlier responses.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict[str, Any]  # the response object, as `GET` returns it
    input: list[dict[str, Any]]  # the conversation's items up to this response's output
    size: int  # bytes it is counted for

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a response that follows this one continues from."""
        output: list[dict[str, Any]] = self.response["output"]
        return self.input + output


class ResponseStore:
    def __init__(self, max_count: int, max_bytes: int) -> None:
        self._records: OrderedDict[str, Stored] = OrderedDict()
        self._max_count = max_count
        self._max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    def get(self, response_id: str) -> Stored | None:
        return self._records.get(response_id)

    def put(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        size = len(orjson.dumps(response)) + len(orjson.dumps(input_items))
        if size > self._max_bytes or self._max_count == 0:
            log.warning("response %s not stored: %d bytes exceed the store", response["id"], size)
            return
        self.delete(response["id"])
        self._records[response["id"]] = Stored(response, input_items, size)
        self.bytes += size
        while len(self._records) > self._max_count or self.bytes > self._max_bytes:
            _, evicted = self._records.popitem(last=False)
            self.bytes -= evicted.size

    def delete(self, response_id: str) -> bool:
        record = self._records.pop(response_id, None)
        if record is None:
            return False
        self.bytes -= record.size
        return True
