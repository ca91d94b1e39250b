"""The engine contract: the only engine types that `gateway/` imports.

The gateway owns text: it applies the chat template, tokenizes, detokenizes and
matches stop strings. An engine sees token ids only, and writes each request's
output to the caller's `Sink`, on the event loop's thread:

    request = GenerationRequest("req-1", prompt_token_ids=[...], sampling=SamplingParams(64))
    abort = await engine.open(request, sink)
    # each engine step: sink.put(new_ids) for every request that advanced;
    # last: sink.finish(Finished(...)) or sink.fail(EngineError(...))

A sink hears of every request an engine step advanced within that step, so a
consumer can serve all of them in one pass (`gateway/serving/delivery.py`)
instead of waking once per request. Calling `abort` before the last word (the
consumer went away, or found a stop string) stops the request at once and frees
its KV cache; the engine may still write to the sink afterwards, which ignores
it. The token that ended generation on a stop id is not put, but is counted in
`Finished.completion_tokens`. `engines.channel.generate` turns this into an
async iterator of events, for consumers that want one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol


class FinishReason(enum.StrEnum):
    """How a request ended: one enum from the engine through the wire to the metrics.

    Engines end a request with STOP, LENGTH or ABORT. The gateway reports STOP as
    TOOL_CALLS when the output held tool calls, and counts a request that never
    finished as ABORT (the client left) or ERROR (it failed).
    """

    STOP = "stop"  # a stop token id (EOS) was generated, or a stop string matched
    LENGTH = "length"  # max_tokens or the context length was reached
    TOOL_CALLS = "tool_calls"  # the gateway's: STOP, with tool calls in the output
    # The client went away; or the engine gave up on the request, which the client
    # sees as an error and the metrics count as ERROR.
    ABORT = "abort"
    ERROR = "error"  # the gateway's: the request failed


class ConstraintKind(enum.StrEnum):
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON valid against `spec`, a JSON Schema document
    REGEX = "regex"  # text matching `spec`
    GRAMMAR = "grammar"  # text in the language of `spec`, xgrammar's EBNF


@dataclass(frozen=True, slots=True)
class Constraint:
    """What the output must be, enforced token by token by a grammar engine.

    The kinds are xgrammar's, which TensorRT-LLM's guided decoding also uses;
    the gateway checks `spec` before an engine sees it.
    """

    kind: ConstraintKind
    spec: str = ""  # empty for JSON_OBJECT


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """One request's sampling, with OpenAI/vLLM semantics.

    Logits are transformed in this order: logit_bias, penalties, the min_tokens
    mask, the constraint's mask; then temperature, top-k and top-p pick a token.
    Penalties: presence and frequency count generated tokens only (OpenAI);
    repetition divides positive and multiplies negative logits of every token
    seen, prompt included (CTRL, as in Hugging Face and vLLM).
    """

    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    seed: int | None = None
    # The ids that end generation, EOS included: the engine stops on exactly these,
    # so an empty set means no EOS stop at all (ignore_eos).
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    min_tokens: int = 0  # stop_token_ids cannot be sampled before this many tokens
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0  # 1: none
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    # None: no logprobs. k: each token's logprob and the k most likely ones (0 <= k);
    # log-softmax of the model's raw logits, before any of the transforms above.
    logprobs: int | None = None
    constraint: Constraint | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    logprob: float  # of the generated token
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob) of the k likeliest, best first


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """Token ids generated since the previous event; several when the consumer lags."""

    token_ids: list[int]
    # One per token id when the request asked for logprobs, else None.
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    queue_seconds: float = 0.0  # from submission until the engine first scheduled it


GenerationEvent = TokenDelta | Finished


@dataclass(frozen=True, slots=True)
class EngineLimits:
    max_seq_len: int  # prompt plus output
    max_input_len: int
    max_batch_size: int
    max_num_tokens: int | None = None  # tokens per engine step, where the engine has one

    def output_room(self, prompt_tokens: int) -> int:
        """Tokens left for output after a prompt this long; `PromptTooLong` if none.

        The one context-fit check: the gateway words its refusal for clients, and
        each engine applies it again to whatever reaches it.
        """
        if prompt_tokens >= self.max_seq_len:
            raise PromptTooLong(prompt_tokens, self.max_seq_len, input_limit=False)
        if prompt_tokens > self.max_input_len:
            raise PromptTooLong(prompt_tokens, self.max_input_len, input_limit=True)
        return self.max_seq_len - prompt_tokens


@dataclass(frozen=True, slots=True)
class EngineStats:
    running: int = 0
    waiting: int = 0
    kv_blocks_total: int = 0
    kv_blocks_used: int = 0
    # Prompt tokens looked up in the prefix cache, and found there; cumulative. An
    # engine that counts whole blocks only reports blocks x tokens per block.
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    reused_blocks: int = 0  # KV blocks reused across requests, cumulative
    step_seconds: float = 0.0  # the latest engine step's latency, where the engine says


class EngineError(Exception):
    """The engine failed a request, or failed altogether (then `healthy()` is false)."""


class EngineRequestError(EngineError):
    """The engine refused this request's input (the client's fault: a 400)."""


class PromptTooLong(EngineRequestError):
    """A prompt that leaves no room for output (`input_limit`: past `max_input_len`)."""

    def __init__(self, prompt_tokens: int, limit: int, *, input_limit: bool) -> None:
        super().__init__(
            f"the prompt has {prompt_tokens} tokens; the engine takes at most "
            f"{limit if input_limit else limit - 1}"
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.input_limit = input_limit


class Sink(Protocol):
    """Where an engine puts one request's output; `finish` or `fail` is its last word."""

    @property
    def closed(self) -> bool:
        """True once the engine has said its last word for this request."""
        ...

    def put(self, token_ids: Iterable[int], logprobs: Iterable[TokenLogprob] = ()) -> None:
        """New ids, never empty; with one logprob per id when the request asked for them."""

    def finish(self, final: Finished) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class Gathered:
    """A `Sink` that keeps what the engine put until its consumer takes it.

    `_changed` runs after each put and after the last word: a consumer's cue to come.
    """

    __slots__ = ("_error", "_final", "_logprobs", "_tokens")

    def __init__(self, logprobs: bool) -> None:
        """`logprobs`: the request asked for them, so every `put` brings one per token."""
        self._tokens: list[int] = []
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._final: Finished | None = None
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._final is not None or self._error is not None

    def put(self, token_ids: Iterable[int], logprobs: Iterable[TokenLogprob] = ()) -> None:
        self._tokens.extend(token_ids)
        if self._logprobs is not None:
            self._logprobs.extend(logprobs)
        self._changed()

    def finish(self, final: Finished) -> None:
        if not self.closed:
            self._final = final
            self._changed()

    def fail(self, error: BaseException) -> None:
        if not self.closed:
            self._error = error
            self._changed()

    def _take(self) -> tuple[list[int], list[TokenLogprob] | None] | None:
        """The ids put since the last take, with their logprobs; None if there are none."""
        if not self._tokens:
            return None
        tokens, self._tokens = self._tokens, []
        logprobs = self._logprobs
        if logprobs is not None:
            self._logprobs = []
        return tokens, logprobs

    def _changed(self) -> None:
        raise NotImplementedError


class Engine(Protocol):
    """An inference engine held in-process; every method runs on the event loop."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """Load the model; `generate` may be called once this returns."""

    async def close(self) -> None:
        """Abort what is running and release the model."""

    def healthy(self) -> bool: ...

    def limits(self) -> EngineLimits: ...

    def stats(self) -> EngineStats: ...

    async def open(self, request: GenerationRequest, sink: Sink) -> Callable[[], None]:
        """Start `request`, its output going to `sink`; returns what aborts it.

        Raises `EngineError` (`EngineRequestError` for the request's own fault) if the
        engine cannot take it; a failure once it runs reaches `sink.fail`.
        """
        ...
