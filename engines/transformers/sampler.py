"""Every request's sampling in one logits processor of transformers' continuous batching.

The manager is created greedy (`engines/transformers/manager.py`), and this
processor is its only one. Each step it transforms each row of logits as its
request asks (`SamplingParams` gives the order), picks the token itself
(temperature, top-k, top-p, a draw from the request's own generator when seeded)
and leaves every other token of that row at -inf, so the manager's argmax takes
exactly that token. Having chosen it, it updates the request's state at once:
penalty counts, the grammar matcher, the logprob record.

Rows reach their request through a slot id, the processor's per-request tensor
argument (`add_request(..., sampler_slot=slot)`). `RequestSampler`s are added to
and removed from `SamplerProcessor.requests` on the event loop and read on the
manager thread: plain dict operations, atomic under the GIL. The event loop reads
back `logprobs` (only ever appended to), `ended_at` and `error` (set once).

Greedy rows with nothing else to do cost nothing: the processor returns at once.
Sampled rows are batched (a softmax, a cumsum and one uniform number a row);
only rows with penalties, a bias, a grammar, min_tokens or logprobs are worked
on one by one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import xgrammar as xgr
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
)

from engines.base import (
    Constraint,
    ConstraintKind,
    EngineRequestError,
    SamplingParams,
    TokenLogprob,
)
from engines.transformers.token_draw import sample

logger = logging.getLogger(__name__)

NO_SLOT = -1  # rows of requests submitted without a slot (the warm-up): greedy
# Below this (or NaN), a temperature is greedy: dividing logits by a tiny one overflows to inf.
_MIN_TEMPERATURE = 1e-5
_INF = float("inf")
_OBJECT_SCHEMA = '{"type": "object"}'  # xgrammar's builtin JSON grammar allows any value
# xgrammar's errors start with "[time] source.cc:line: ".
_XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")


def grammar_compiler(tokenizer: Any, vocab_size: int) -> xgr.GrammarCompiler:
    """A compiler for the model's vocabulary; it caches what it compiled."""
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    return xgr.GrammarCompiler(info)


def compile_constraint(
    compiler: xgr.GrammarCompiler, constraint: Constraint
) -> xgr.CompiledGrammar:
    """Blocking (up to seconds for a large schema): call it off the event loop."""
    # JSON in one line, with single spaces after separators: free whitespace lets a small
    # model pour newlines into the output until max_tokens cuts it, unparseable.
    compile_spec: dict[ConstraintKind, Callable[[str], xgr.CompiledGrammar]] = {
        ConstraintKind.JSON_OBJECT: lambda _: _compact_json(compiler, _OBJECT_SCHEMA),
        ConstraintKind.JSON_SCHEMA: lambda spec: _compact_json(compiler, spec),
        ConstraintKind.REGEX: compiler.compile_regex,
        ConstraintKind.GRAMMAR: compiler.compile_grammar,
    }
    try:
        return compile_spec[constraint.kind](constraint.spec)
    except (RuntimeError, ValueError) as error:
        lines = str(error).strip().splitlines() or [""]
        reason = _XGRAMMAR_PREFIX.sub("", lines[0])
        raise EngineRequestError(f"invalid {constraint.kind} constraint: {reason}") from error


def _compact_json(compiler: xgr.GrammarCompiler, schema: str) -> xgr.CompiledGrammar:
    return compiler.compile_json_schema(schema, any_whitespace=False, separators=(", ", ": "))


def apply_penalties(
    row: torch.Tensor,
    counts: torch.Tensor | None,
    seen: torch.Tensor | None,
    presence: float,
    frequency: float,
    repetition: float,
) -> None:
    """CTRL's repetition penalty over `seen`, then OpenAI's over `counts`; in place.

    `seen` marks every token of the prompt and the output; `counts` holds how
    often each token was generated. Either is None where its penalties are off.
    """
    if seen is not None:
        penalized = torch.where(row > 0, row / repetition, row * repetition)
        row.copy_(torch.where(seen, penalized, row))
    if counts is not None:
        row.sub_(counts * frequency + (counts > 0).to(row.dtype) * presence)


class RequestSampler:
    """One request's sampling: built on the event loop, stepped on the manager thread."""

    def __init__(
        self,
        sampling: SamplingParams,
        prompt_token_ids: Sequence[int],
        vocab_size: int,
        grammar: xgr.CompiledGrammar | None = None,
    ) -> None:
        self.greedy = not sampling.temperature >= _MIN_TEMPERATURE  # NaN included
        self.temperature = 1.0 if self.greedy else sampling.temperature
        self.top_k = sampling.top_k if 0 < sampling.top_k < vocab_size else 0
        self.top_p = max(sampling.top_p, 0.0) if sampling.top_p < 1.0 else 1.0  # NaN: 1
        self.seed = sampling.seed
        # Only ids the model can produce can be masked; the manager gets them all.
        self.stop_ids = sorted(t for t in sampling.stop_token_ids if 0 <= t < vocab_size)
        self.min_tokens = sampling.min_tokens
        self.presence = sampling.presence_penalty
        self.frequency = sampling.frequency_penalty
        self.repetition = sampling.repetition_penalty
        self.bias = _checked_bias(sampling.logit_bias, vocab_size)
        self.logprobs_k = (
            None if sampling.logprobs is None else min(max(sampling.logprobs, 0), vocab_size)
        )
        self.matcher = None if grammar is None else _matcher(grammar, self.stop_ids)
        self._prompt = prompt_token_ids
        self._vocab_size = vocab_size
        self.tracked = bool(
            self.bias or self.presence or self.frequency or self.repetition != 1.0
        ) or (self.min_tokens > 0 or self.matcher is not None or self.logprobs_k is not None)
        self.plain_greedy = self.greedy and not self.tracked

        # Manager thread from here on, created on the first step on the logits' device.
        self.generated = 0  # tokens chosen so far
        self.logprobs: list[TokenLogprob] = []  # one per chosen token, while asked for
        self.ended_at: int | None = None  # the grammar ended after this many tokens
        self.error: str | None = None
        self.generator: torch.Generator | None = None
        self._tensors: dict[str, torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        """Nothing this request generates now is kept: its rows are an argmax, unrecorded."""
        return self.ended_at is not None or self.error is not None

    def ready(self, device: torch.device) -> None:
        if self._tensors is not None:
            return
        self._tensors = tensors = {}
        if self.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        if self.bias:
            tensors["bias_ids"] = torch.tensor([t for t, _ in self.bias], device=device)
            tensors["bias"] = torch.tensor([b for _, b in self.bias], device=device)
        if self.presence or self.frequency:
            tensors["counts"] = torch.zeros(self._vocab_size, device=device)
        if self.repetition != 1.0:
            seen = torch.zeros(self._vocab_size, dtype=torch.bool, device=device)
            seen[torch.tensor(list(self._prompt), dtype=torch.long, device=device)] = True
            tensors["seen"] = seen
        if self.stop_ids:
            tensors["stop_ids"] = torch.tensor(self.stop_ids, device=device)
        if self.matcher is not None:
            tensors["bitmask"] = xgr.allocate_token_bitmask(1, self._vocab_size)
            tensors["grammar_stops"] = torch.tensor(self.matcher.stop_token_ids, device=device)

    def prepare(self, row: torch.Tensor) -> None:
        """Bias, penalties and masks on this request's row of logits, in place."""
        tensors = self._tensors
        if self.done or tensors is None:
            return
        if "bias" in tensors:
            row.index_add_(0, tensors["bias_ids"], tensors["bias"])
        counts, seen = tensors.get("counts"), tensors.get("seen")
        if counts is not None or seen is not None:
            apply_penalties(row, counts, seen, self.presence, self.frequency, self.repetition)
        if self.matcher is not None:
            self._mask_grammar(row, tensors)
        if self.generated < self.min_tokens and "stop_ids" in tensors:
            # Where the grammar allows nothing but a stop id, the grammar wins.
            kept = row.index_fill(0, tensors["stop_ids"], -_INF)
            if bool(torch.isfinite(kept).any()):
                row.copy_(kept)

    def _mask_grammar(self, row: torch.Tensor, tensors: dict[str, torch.Tensor]) -> None:
        assert self.matcher is not None
        bitmask = tensors["bitmask"]
        if self.matcher.fill_next_token_bitmask(bitmask):
            xgr.apply_token_bitmask_inplace(row.unsqueeze(0), bitmask.to(row.device))
        if not self.stop_ids:
            # No id may stop it (ignore_eos): it goes on while the grammar can, and
            # ends where the grammar allows nothing but its own stop tokens.
            row.index_fill_(0, tensors["grammar_stops"], -_INF)
            if not bool(torch.isfinite(row).any()):
                self.ended_at = self.generated

    def accept(self, token: int, logprob: TokenLogprob | None) -> None:
        """Record the token chosen for this request."""
        if self.done or self._tensors is None:
            return
        self.generated += 1
        if logprob is not None:
            self.logprobs.append(logprob)
        if "counts" in self._tensors:
            self._tensors["counts"][token] += 1
        if "seen" in self._tensors:
            self._tensors["seen"][token] = True
        if self.matcher is not None and not self.matcher.accept_token(token):
            # Only an all -inf row can get here; stop short of the stray token.
            logger.warning("the grammar refused token %d: the output ends before it", token)
            self.ended_at = self.generated - 1


def _checked_bias(
    logit_bias: tuple[tuple[int, float], ...], vocab_size: int
) -> tuple[tuple[int, float], ...]:
    # An id outside the table would kill the manager thread.
    if any(not 0 <= token < vocab_size for token, _ in logit_bias):
        raise EngineRequestError(
            f"logit_bias has token ids outside the vocabulary (0..{vocab_size - 1})"
        )
    return tuple((token, bias) for token, bias in logit_bias if bias)


def _matcher(grammar: xgr.CompiledGrammar, stop_ids: list[int]) -> xgr.GrammarMatcher:
    # The grammar's end allows exactly the request's stop ids; without any (xgrammar
    # wants one), the tokenizer's EOS, which `_mask_grammar` turns into an end.
    return xgr.GrammarMatcher(grammar, override_stop_tokens=stop_ids or None)


class SamplerProcessor(ContinuousBatchingLogitsProcessor):
    """The manager's one logits processor: it chooses every row's token."""

    def __init__(self) -> None:
        self.supported_kwargs = {"sampler_slot": int}  # the manager checks the type
        self.ignored_kwargs = ()
        self.requests: dict[int, RequestSampler] = {}  # by slot

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(NO_SLOT)

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        slots = [
            request.state.logit_processor_kwargs.get("sampler_slot", NO_SLOT)
            for request in requests_with_new_token
        ]
        return torch.tensor(slots, dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        # A slot already removed (an aborted request's last step) is a greedy row.
        rows = [self.requests.get(slot) for slot in tensor_arg[: scores.size(0)].tolist()]
        if all(row is None or row.plain_greedy for row in rows):
            return scores  # the manager's own argmax
        try:
            self._step(scores, rows)
        except Exception as error:  # a fault must fail these requests, not the manager thread
            logger.exception("sampling failed")
            for row in rows:
                if row is not None:
                    row.error = f"sampling failed: {error}"
        return scores

    def _step(self, scores: torch.Tensor, rows: list[RequestSampler | None]) -> None:
        for row in rows:
            if row is not None:
                row.ready(scores.device)
        raw = _raw_logprobs(scores, rows)
        for i, row in enumerate(rows):
            if row is not None and row.tracked:
                row.prepare(scores[i])
        tokens, sampled = _choose(scores, rows)
        token_list: list[int] = tokens.tolist()
        records = {} if raw is None else _logprob_records(*raw, tokens)
        for i, row in enumerate(rows):
            if row is not None and row.tracked:
                row.accept(token_list[i], records.get(i))
        if sampled:  # greedy rows: the manager's argmax finds the same token
            index = torch.tensor(sampled, device=scores.device)
            scores.index_fill_(0, index, -_INF)
            scores[index, tokens[index]] = 0.0


def _raw_logprobs(
    scores: torch.Tensor, rows: Sequence[RequestSampler | None]
) -> tuple[list[tuple[int, int]], torch.Tensor] | None:
    """The rows that want logprobs (index, k), and their log-softmax before any transform."""
    wanted = [
        (i, row.logprobs_k)
        for i, row in enumerate(rows)
        if row is not None and row.logprobs_k is not None and not row.done
    ]
    if not wanted:
        return None
    return wanted, torch.log_softmax(scores[[i for i, _ in wanted]], dim=-1)


def _logprob_records(
    wanted: list[tuple[int, int]], logprobs: torch.Tensor, tokens: torch.Tensor
) -> dict[int, TokenLogprob]:
    index = torch.tensor([i for i, _ in wanted], device=tokens.device)
    chosen: list[float] = logprobs.gather(1, tokens[index].unsqueeze(1)).squeeze(1).tolist()
    values, ids = logprobs.topk(max(k for _, k in wanted), dim=-1)
    top_values: list[list[float]] = values.tolist()
    top_ids: list[list[int]] = ids.tolist()
    return {
        i: TokenLogprob(chosen[j], tuple(zip(top_ids[j][:k], top_values[j][:k], strict=True)))
        for j, (i, k) in enumerate(wanted)
    }


def _choose(
    scores: torch.Tensor, rows: Sequence[RequestSampler | None]
) -> tuple[torch.Tensor, list[int]]:
    """Every row's token, and which rows were sampled rather than argmaxed."""
    tokens = scores.argmax(dim=-1)
    group = [
        (i, row) for i, row in enumerate(rows) if row is not None and not (row.greedy or row.done)
    ]
    sampled = [i for i, _ in group]
    if sampled:
        index = torch.tensor(sampled, device=scores.device)
        tokens[index] = sample(scores[index], [row for _, row in group])
    return tokens, sampled
