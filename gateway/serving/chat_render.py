"""Chat messages to prompt token ids, without transformers (render workers import this alone).

The chat template is compiled once, in a sandbox set up as transformers sets up its
own (same extensions, filters and globals), and rendered with the variables its
`apply_chat_template` passes, so the text is the same; what that call adds per
request (template lookup, input validation and copies) is skipped.

Tokenizing is most of the cost (about 1.5 us a token on a 2-core machine, against
tens of microseconds for the template): `gateway.serving.token_encoder` runs it in
tokenizers' Rust code, and remembers the pieces between special tokens.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.synchronize import Barrier
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from gateway.serving.token_encoder import TokenEncoder

Messages = list[dict[str, Any]]
Tools = list[dict[str, Any]] | None

# transformers' names for a message's reasoning: templates read the first, gpt-oss's "thinking".
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """What renders prompts, as plain data that a worker process receives once."""

    templates: dict[str, str]  # "default", and "tool_use" where the model has one for tools
    special_tokens: dict[str, str]  # bos_token, eos_token, ...: every template gets them


class ChatTemplate:
    def __init__(self, templates: Mapping[str, str], special_tokens: Mapping[str, str]) -> None:
        environment = _environment()
        self._default = environment.from_string(templates["default"])
        # transformers' choice among named templates: "tool_use" when tools are given.
        tool_use = templates.get("tool_use")
        self._tool_use = self._default if tool_use is None else environment.from_string(tool_use)
        # Templates written for tool use read a `tools` variable; others drop tools silently.
        self.renders_tools = "tools" in (tool_use or templates["default"])
        self._special_tokens = dict(special_tokens)

    def render(
        self,
        messages: Messages,
        *,
        tools: Tools = None,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt text; `template_kwargs` override the special tokens, as in transformers,
        and must not name `messages`, `tools` or `add_generation_prompt` (a TypeError)."""
        template = self._default if tools is None else self._tool_use
        variables = {"documents": None, **self._special_tokens, **(template_kwargs or {})}
        return template.render(
            messages=_template_messages(messages),
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )


def _template_messages(messages: Messages) -> Messages:
    """The messages as transformers hands them over: keys holding None dropped (templates
    test for presence), reasoning also under the names templates read. The sandbox is
    immutable, so unlike transformers this needs no deep copy."""
    plain = []
    for message in messages:
        present = {key: value for key, value in message.items() if value is not None}
        reasoning = next((present[key] for key in _REASONING_FIELDS if key in present), None)
        if reasoning is not None:
            present = {"thinking": reasoning, **present, "reasoning_content": reasoning}
        plain.append(present)
    return plain


def _environment() -> ImmutableSandboxedEnvironment:
    """transformers' `_compile_jinja_template` environment (utils/chat_template_utils.py)."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    environment.globals["dict"] = _TemplateDict()
    environment.globals["namespace"] = _TemplateNamespace
    return environment


class _Generation(jinja2.ext.Extension):
    """`{% generation %}` marks the assistant's text for transformers' training masks;
    a prompt is rendered with its body alone, as transformers renders it untracked."""

    tags = {"generation"}  # noqa: RUF012 (jinja's own class attribute)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters; transformers' does not.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _TemplateDict:
    """`dict()` and `dict.fromkeys()` without the type itself, whose attributes lead out of
    the sandbox."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """A namespace that refuses underscore names, which reach CPython internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        # No named `self`, as in Jinja's Namespace: `namespace(self=...)` must still work.
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for name in attrs:
            _check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_name(name)
        super().__setitem__(name, value)


def _check_name(name: object) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise jinja2.exceptions.SecurityError(
            "Chat templates cannot store underscore-prefixed attributes on a namespace, "
            f"but got {name!r}. Please rename the attribute."
        )


class PromptPipeline:
    """Chat messages to ids: the template's text, then its tokens."""

    def __init__(self, template: ChatTemplate, encoder: TokenEncoder) -> None:
        self.template = template
        self.encoder = encoder

    @classmethod
    def load(cls, spec: PromptSpec, tokenizer_json: str) -> PromptPipeline:
        tokenizer = Tokenizer.from_str(tokenizer_json)
        return cls(ChatTemplate(spec.templates, spec.special_tokens), TokenEncoder(tokenizer))

    def ids(
        self,
        messages: Messages,
        tools: Tools,
        add_generation_prompt: bool,
        template_kwargs: Mapping[str, Any] | None,
    ) -> list[int]:
        text = self.template.render(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            template_kwargs=template_kwargs,
        )
        # The template already wrote any BOS text: adding special tokens would double it.
        return self.encoder.encode(text)


# In a render worker process (gateway/serving/prompts.py starts them): its pipeline, once loaded.
_worker: PromptPipeline | None = None
_STARTUP_SECONDS = 300  # a worker that never loads fails the pool instead of hanging it
RenderArgs = tuple[Messages, Tools, bool, Mapping[str, Any] | None]


def start_worker(spec: PromptSpec, tokenizer_json: str, ready: Barrier) -> None:
    """A worker's initializer: its first task waits on `ready` until every worker has loaded."""
    global _worker
    # Ctrl-C reaches the whole process group: the gateway drains, then closes the pool;
    # a worker that ended first would fail the renders still in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = PromptPipeline.load(spec, tokenizer_json)
    ready.wait(_STARTUP_SECONDS)


def worker_started() -> None:
    """A worker's first task, run once every worker has loaded."""


def render_batch(batch: list[RenderArgs]) -> list[list[int] | Exception]:
    """Each prompt's ids, or what rendering it raised."""
    assert _worker is not None, "start_worker loads it"
    results: list[list[int] | Exception] = []
    for args in batch:
        try:
            results.append(_worker.ids(*args))
        except Exception as error:
            results.append(error)
    return results
