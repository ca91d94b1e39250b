"""A generate response: the one JSON body, or `generate_stream`'s events.

Every response is `{"model_name", "model_version", "text_output"}`, with
`cum_log_probs` and `output_log_probs` when `return_log_probs` asks for them. A
streamed event (`data: {...}`) carries the text of its new tokens only, as the
ensemble's streaming responses do; a failed stream's last event is `{"error": ...}`.
There is no closing event: the stream simply ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from engines.base import TokenLogprob
from gateway.errors import GatewayError, Wire
from gateway.openai.bodies import Collected
from gateway.text.streaming import ChoiceStream, Delta

_END = b"\n\n"
# JSON has no infinity: a token a bias ruled out shows this floor, as OpenAI's routes do.
_FLOOR = -9999.0


def _logprobs(entries: Sequence[TokenLogprob]) -> list[float]:
    return [max(entry.logprob, _FLOOR) for entry in entries]


def generate_body(
    out: Collected, model_name: str, model_version: str, *, prompt: str, logprobs: bool
) -> dict[str, Any]:
    """The whole response; `prompt` leads `text_output` (empty: excluded)."""
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "text_output": prompt + "".join(out.content),
    }
    if logprobs:
        values = _logprobs(out.logprobs)
        body["cum_log_probs"] = sum(values)
        body["output_log_probs"] = values
    return body


class GenerateEvents:
    """`generate_stream`'s events, one per delta (a `Chunks` for `gateway.serving.runs`)."""

    __slots__ = ("_cumulative", "_head", "_logprobs")

    def __init__(self, model_name: str, model_version: str, *, logprobs: bool) -> None:
        names = {"model_name": model_name, "model_version": model_version}
        self._head = b"data: " + orjson.dumps(names)[:-1] + b',"text_output":'
        self._logprobs = logprobs
        self._cumulative = 0.0  # the stream's log probability so far

    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes:
        event = self._head + orjson.dumps(delta.content)
        if self._logprobs:
            values = _logprobs(delta.logprobs or ())
            self._cumulative += sum(values)
            more = {"cum_log_probs": self._cumulative, "output_log_probs": values}
            event += b"," + orjson.dumps(more)[1:-1]
        return event + b"}" + _END

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes:
        return b""  # the last delta was the last event

    def usage(self, usage: dict[str, Any]) -> bytes:
        return b""  # the ensemble reports no usage

    def error(self, error: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(error.body(Wire.TRITON)) + _END

    def end(self) -> bytes:
        return b""


class WholeEvent(GenerateEvents):
    """`generate_stream` without `stream: true`: the ensemble answers once, with the whole
    output (the prompt included unless excluded), as one event."""

    __slots__ = ("_names", "_out", "_prompt")

    def __init__(
        self,
        model_name: str,
        model_version: str,
        choice: ChoiceStream,
        *,
        prompt: str,
        logprobs: bool,
    ) -> None:
        super().__init__(model_name, model_version, logprobs=logprobs)
        self._names = (model_name, model_version)
        self._out = Collected(choice)
        self._prompt = prompt

    def delta(self, choice: ChoiceStream, delta: Delta, usage: dict[str, Any] | None) -> bytes:
        self._out.add(delta)
        return b""

    def finish(self, choice: ChoiceStream, usage: dict[str, Any] | None) -> bytes:
        body = generate_body(self._out, *self._names, prompt=self._prompt, logprobs=self._logprobs)
        return b"data: " + orjson.dumps(body) + _END
