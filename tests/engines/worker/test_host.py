"""The worker's outbox and relays, with a writer that records what would be sent."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any, cast

from engines.base import (
    Engine,
    EngineStats,
    Finished,
    FinishReason,
    PromptTooLong,
    TokenLogprob,
)
from engines.worker.host import _Outbox, _Relay
from engines.worker.wire import decode_error

DONE = Finished(FinishReason.LENGTH, prompt_tokens=3, completion_tokens=2)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[Any, ...]] = []

    def write(self, frame: bytes) -> None:
        self.messages.append(pickle.loads(frame[4:]))


class StubEngine:
    def __init__(self) -> None:
        self.stats_calls = 0

    def stats(self) -> EngineStats:
        self.stats_calls += 1
        return EngineStats(running=self.stats_calls)

    def healthy(self) -> bool:
        return True


def outbox() -> tuple[_Outbox, Recorder, StubEngine]:
    recorder, engine = Recorder(), StubEngine()
    return _Outbox(cast(Engine, engine), cast(Any, recorder)), recorder, engine


async def test_one_step_of_many_requests_leaves_as_one_message() -> None:
    box, sent, engine = outbox()
    relays = [_Relay(handle, box) for handle in range(3)]
    for relay in relays:
        relay.put([7, 8])
    relays[0].put([9])
    await asyncio.sleep(0)
    assert sent.messages == [
        (
            "step",
            [(0, [7, 8], None), (1, [7, 8], None), (2, [7, 8], None), (0, [9], None)],
            [],
            [],
            True,
            None,
        ),
    ]
    assert engine.stats_calls == 0  # nothing ended: no stats with the step


async def test_a_requests_last_word_follows_its_tokens_with_fresh_stats() -> None:
    box, sent, _ = outbox()
    done, failed = _Relay(0, box), _Relay(1, box)
    logprob = TokenLogprob(-0.5, ((4, -0.5),))
    done.put((4,), (logprob,))
    done.finish(DONE)
    failed.fail(PromptTooLong(600, 512, input_limit=False))
    done.finish(DONE)  # only the first last word counts
    await asyncio.sleep(0)
    ((kind, tokens, finishes, failures, healthy, stats),) = sent.messages
    assert (kind, tokens, finishes, healthy) == ("step", [(0, [4], [logprob])], [(0, DONE)], True)
    assert [(handle, str(decode_error(error))) for handle, error in failures] == [
        (1, "the prompt has 600 tokens; the engine takes at most 511")
    ]
    assert stats == EngineStats(running=1)
    assert box.relays == {}  # ended requests cannot be aborted any more
    assert done.closed and failed.closed


async def test_failing_all_ends_every_open_request_once() -> None:
    box, sent, _ = outbox()
    relays = [_Relay(handle, box) for handle in range(2)]
    relays[0].finish(DONE)
    box.fail_all(RuntimeError("bug"))
    await asyncio.sleep(0)
    ((_, _, finishes, failures, _, _),) = sent.messages
    assert finishes == [(0, DONE)]
    assert [(handle, str(decode_error(error))) for handle, error in failures] == [
        (1, "RuntimeError: bug")
    ]


async def test_nothing_pending_sends_nothing() -> None:
    box, sent, _ = outbox()
    box.flush()
    await asyncio.sleep(0)
    assert sent.messages == []
