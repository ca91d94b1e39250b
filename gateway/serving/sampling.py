"""A request's sampling fields, checked, as the engine's `SamplingParams`.

Every check that depends on the model (the vocabulary, the context left, the
schema a grammar engine can compile) happens here, before the response starts,
so a bad field is a 400 and never an error event halfway through a stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Set

import xgrammar

from engines.base import Constraint, ConstraintKind, EngineLimits, SamplingParams
from gateway.errors import InvalidRequest
from gateway.openai.protocol import CompletionBody, ResponseFormat
from gateway.serving.lengths import fit_max_tokens
from gateway.serving.tool_prompts import grammar_problem
from gateway.settings import Settings


def sampling_params(
    body: CompletionBody,
    prompt_tokens: int,
    *,
    limits: EngineLimits,
    settings: Settings,
    vocab_size: int,
    eos_token_ids: Set[int],
    constraint: Constraint | None,
) -> SamplingParams:
    max_tokens = fit_max_tokens(
        prompt_tokens, body.requested_max_tokens, limits, strict=settings.strict_max_tokens
    )
    if body.min_tokens > max_tokens:
        raise InvalidRequest(
            f"'min_tokens' ({body.min_tokens}) is more than the {max_tokens} tokens this "
            "request may generate",
            param="min_tokens",
        )
    stop_ids = frozenset(_token_ids(body.stop_token_ids or (), vocab_size, "stop_token_ids"))
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        seed=body.seed,
        stop_token_ids=stop_ids if body.ignore_eos else stop_ids | eos_token_ids,
        min_tokens=body.min_tokens,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=_logit_bias(body.logit_bias, vocab_size),
        logprobs=_logprobs(body.top_logprobs_count, settings.max_logprobs),
        constraint=constraint,
    )


def response_constraint(response_format: ResponseFormat | None) -> Constraint | None:
    """The grammar that `response_format` asks for; a 400 if no grammar engine can take it."""
    if response_format is None or response_format.type == "text":
        return None
    kind = response_format.type
    if kind == "json_object":
        return Constraint(ConstraintKind.JSON_OBJECT)
    if kind == "json_schema":
        schema = (response_format.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object",
                param="response_format",
            )
        spec = json.dumps(schema)
        _check(lambda: xgrammar.Grammar.from_json_schema(spec), "JSON schema")
        return Constraint(ConstraintKind.JSON_SCHEMA, spec)
    if kind == "regex":
        pattern = response_format.regex or ""
        _check(lambda: xgrammar.Grammar.from_regex(pattern), "regex")
        return Constraint(ConstraintKind.REGEX, pattern)
    grammar = response_format.grammar or ""
    _check(lambda: xgrammar.Grammar.from_ebnf(grammar), "grammar")
    return Constraint(ConstraintKind.GRAMMAR, grammar)


def _check(compile_: Callable[[], object], what: str) -> None:
    try:
        compile_()
    except Exception as error:  # xgrammar raises RuntimeError, ValueError or its own
        raise InvalidRequest(
            f"'response_format' has an invalid {what}: {grammar_problem(error)}",
            param="response_format",
        ) from error


def _token_ids(ids: Iterable[int], vocab_size: int, param: str) -> list[int]:
    checked = []
    for token in ids:
        if not 0 <= token < vocab_size:
            raise InvalidRequest(
                f"token id {token} in '{param}' is outside the vocabulary (0..{vocab_size - 1})",
                param=param,
            )
        checked.append(token)
    return checked


def _logit_bias(bias: dict[str, float] | None, vocab_size: int) -> tuple[tuple[int, float], ...]:
    if not bias:
        return ()
    pairs = []
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(
                f"'logit_bias' keys must be token ids, got {key!r}", param="logit_bias"
            ) from None
        pairs.append((token, value))
    _token_ids((token for token, _ in pairs), vocab_size, "logit_bias")
    return tuple(pairs)


def _logprobs(count: int | None, cap: int) -> int | None:
    if count is not None and count > cap:
        raise InvalidRequest(
            f"at most {cap} logprobs per token may be requested, got {count}",
            param="top_logprobs",
        )
    return count
