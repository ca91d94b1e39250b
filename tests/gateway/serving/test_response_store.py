"""Stored responses: bounded in count and bytes, oldest out first, chains self-contained."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.serving.response_store import ResponseStore


def response(response_id: str, text: str = "x") -> dict[str, Any]:
    item = {"type": "message", "role": "assistant", "content": [{"text": text}]}
    return {"id": response_id, "output": [item]}


def asked(text: str) -> list[dict[str, Any]]:
    return [{"type": "message", "role": "user", "content": text}]


def size(stored: dict[str, Any], inputs: list[dict[str, Any]]) -> int:
    return len(orjson.dumps(stored)) + len(orjson.dumps(inputs))


def test_the_oldest_go_first_past_the_count() -> None:
    store = ResponseStore(max_count=2, max_bytes=10**6)
    for name in ("a", "b", "c"):
        store.put(response(name), [])
    assert (store.get("a"), len(store)) == (None, 2)
    assert store.get("c") is not None


def test_the_oldest_go_first_past_the_bytes() -> None:
    one = size(response("a"), [])
    store = ResponseStore(max_count=100, max_bytes=2 * one)
    for name in ("a", "b", "c"):
        store.put(response(name), [])
    assert [store.get(name) is not None for name in "abc"] == [False, True, True]
    assert store.bytes == 2 * one


def test_one_too_large_is_not_stored_and_evicts_nothing() -> None:
    store = ResponseStore(max_count=10, max_bytes=200)
    store.put(response("a"), [])
    store.put(response("big", "y" * 500), [])
    assert store.get("big") is None and store.get("a") is not None


def test_a_conversation_is_its_input_then_its_output() -> None:
    store = ResponseStore(max_count=10, max_bytes=10**6)
    store.put(response("a", "Hello."), asked("Hi."))
    stored = store.get("a")
    assert stored is not None
    assert stored.conversation == [*asked("Hi."), *response("a", "Hello.")["output"]]


def test_delete_frees_its_bytes() -> None:
    store = ResponseStore(max_count=10, max_bytes=10**6)
    store.put(response("a"), [])
    assert store.delete("a") is True and store.delete("a") is False
    assert (store.bytes, len(store)) == (0, 0)


def test_a_chain_survives_the_eviction_of_its_first_link() -> None:
    """Each record holds its whole conversation: what `previous_response_id` continues."""
    store = ResponseStore(max_count=2, max_bytes=10**6)
    store.put(response("a", "1"), asked("One."))
    first = store.get("a")
    assert first is not None
    store.put(response("b", "2"), first.conversation)
    store.put(response("c", "3"), [])  # evicts "a"
    second = store.get("b")
    assert store.get("a") is None and second is not None
    assert second.conversation == [
        *asked("One."),
        *response("a", "1")["output"],
        *response("b", "2")["output"],
    ]


def test_a_store_of_zero_keeps_nothing() -> None:
    store = ResponseStore(max_count=0, max_bytes=10**6)
    store.put(response("a"), [])
    assert (store.get("a"), len(store), store.bytes) == (None, 0, 0)
