"""One pass per engine step, in slices that let the event loop poll between them."""

from __future__ import annotations

import asyncio

from gateway.serving.delivery import SLICE, Delivery


class Recorder:
    def __init__(self, log: list[object], name: object) -> None:
        self.log = log
        self.name = name

    def deliver(self) -> None:
        self.log.append(self.name)


async def test_every_request_marked_in_a_step_is_served_in_one_callback() -> None:
    delivery, log = Delivery(), list[object]()
    for index in range(5):
        delivery.mark(Recorder(log, index))
    assert log == []  # nothing runs inside the engine's step
    await asyncio.sleep(0)
    assert log == [0, 1, 2, 3, 4]


async def test_a_pass_yields_to_the_loop_after_each_slice() -> None:
    delivery, log = Delivery(), list[object]()
    loop = asyncio.get_running_loop()
    for index in range(SLICE * 2 + 1):
        delivery.mark(Recorder(log, index))
    # Scheduled after the pass: it runs after the first slice, not after the whole pass.
    loop.call_soon(log.append, "other")
    for _ in range(3):
        await asyncio.sleep(0)
    assert log.index("other") == SLICE
    assert [entry for entry in log if entry != "other"] == list(range(SLICE * 2 + 1))


async def test_marks_after_a_pass_get_a_pass_of_their_own() -> None:
    delivery, log = Delivery(), list[object]()
    delivery.mark(Recorder(log, "first"))
    await asyncio.sleep(0)
    delivery.mark(Recorder(log, "second"))
    await asyncio.sleep(0)
    assert log == ["first", "second"]
