"""Prompts to token ids and back, with the model's own tokenizer and chat template.

A short prompt renders and encodes on the event loop (gateway/serving/chat_render.py does both).
A long one goes to the render worker processes where `render_workers` starts them, so
that a burst uses every core, or else to a small thread pool, so that it does not hold
the event loop: the Rust tokenizer releases the GIL there, and a render longer than the
interpreter's 5 ms switch interval lets the loop run in between.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import jinja2
from transformers import AutoTokenizer, GenerationConfig

from gateway.errors import InvalidRequest
from gateway.serving.chat_render import (
    ChatTemplate,
    Messages,
    PromptPipeline,
    PromptSpec,
    RenderArgs,
    Tools,
    render_batch,
    start_worker,
    worker_started,
)
from gateway.serving.token_encoder import TokenEncoder
from gateway.text.detokenizer import IncrementalDetokenizer

log = logging.getLogger(__name__)

# Prompts up to this many characters render on the event loop: about 150 us of CPU
# (bench/preprocess.py), where the hop to a thread costs 25-50 us and the template,
# which holds the GIL, would keep the loop waiting about as long from a thread; a short
# prompt also never queues behind long ones. Longer prompts encode in a thread (the
# Rust encoder releases the GIL) or in a render worker.
INLINE_CHARS = 400
_BATCH = 16  # prompts per task to a render worker: ~40 us of the gateway's CPU each
_MESSAGE_CHARS = 100  # the template's own work for each message, in characters' worth
# The variables that apply_chat_template itself sets: template kwargs cannot.
_RESERVED = frozenset({"messages", "tools", "add_generation_prompt"})


class PromptRenderer:
    def __init__(
        self,
        model_dir: Path,
        chat_template: Path | None = None,
        workers: int = 2,
        render_workers: int = 0,
    ) -> None:
        tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        spec = PromptSpec(
            _templates(model_dir, tokenizer.chat_template, chat_template),
            dict(tokenizer.special_tokens_map),
        )
        self._backend = tokenizer.backend_tokenizer
        self._encoder = TokenEncoder(self._backend)
        log.info(
            "token ids of text between special tokens are %s",
            "remembered"
            if self._encoder.caches
            else "not remembered: this tokenizer's pieces depend on their place in the text",
        )
        self._pipeline = PromptPipeline(
            ChatTemplate(spec.templates, spec.special_tokens), self._encoder
        )
        self.eos_token_ids = _eos_token_ids(model_dir, tokenizer.eos_token_id)
        self.vocab_size: int = len(tokenizer)
        self.renders_tools = self._pipeline.template.renders_tools
        self._token_texts: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prompt")
        self._workers = (
            RenderWorkers(spec, self._backend.to_str(), render_workers) if render_workers else None
        )

    async def render(
        self,
        messages: Messages,
        *,
        tools: Tools = None,
        template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        if self._inline(messages, tools):
            return self.render_sync(
                messages,
                tools=tools,
                template_kwargs=template_kwargs,
                add_generation_prompt=add_generation_prompt,
            )
        _check_template_kwargs(template_kwargs)
        try:
            return await self._render_away(
                (messages, tools, add_generation_prompt, template_kwargs)
            )
        except jinja2.TemplateError as error:
            raise _invalid(error) from error

    def render_sync(
        self,
        messages: Messages,
        *,
        tools: Tools = None,
        template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        _check_template_kwargs(template_kwargs)
        try:
            return self._pipeline.ids(messages, tools, add_generation_prompt, template_kwargs)
        except jinja2.TemplateError as error:
            raise _invalid(error) from error

    async def _render_away(self, args: RenderArgs) -> list[int]:
        workers = self._workers
        if workers is not None:
            try:
                return await workers.render(args)
            except BrokenProcessPool:
                if self._workers is workers:  # the first render to find out
                    log.exception("a render worker died; rendering in threads from now on")
                    self._workers = None
                    workers.close()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._pipeline.ids, *args)

    def _inline(self, messages: Messages, tools: Tools) -> bool:
        """Whether the prompt is short enough to render on the event loop."""
        if tools:
            return False  # schemas: tojson's work, and often long
        chars = 0
        for message in messages:
            content = message.get("content")
            if not isinstance(content, str) or message.get("tool_calls"):
                return False  # parts or arguments: of any length
            chars += _MESSAGE_CHARS + len(content)
        return chars <= INLINE_CHARS

    async def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        if len(text) <= INLINE_CHARS:
            return self._encoder.encode(text, add_special_tokens=add_special_tokens)
        loop = asyncio.get_running_loop()
        encode = functools.partial(self._encoder.encode, add_special_tokens=add_special_tokens)
        return await loop.run_in_executor(self._pool, encode, text)

    def decode(self, token_ids: Sequence[int]) -> str:
        text: str = self._backend.decode(token_ids, skip_special_tokens=False)
        return text

    def token_text(self, token_id: int) -> str:
        """One token alone as text (a partial UTF-8 character shows as U+FFFD)."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = self.decode([token_id])
        return text

    def detokenizer(
        self, prompt_token_ids: Sequence[int], *, skip_special: bool = True
    ) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self._backend, prompt_token_ids, skip_special=skip_special)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._workers is not None:
            self._workers.close()


class RenderWorkers:
    """Processes that each hold a pipeline of their own, so that a burst of long prompts
    renders on every core: in threads the template and the fast path share one GIL.

    Prompts travel in batches: one task each would cost the gateway about as much CPU,
    in pickling and thread hand-offs, as rendering the prompt itself (~250 us).
    """

    def __init__(self, spec: PromptSpec, tokenizer_json: str, count: int) -> None:
        # spawn, not fork: the gateway has threads, whose locks a fork would copy held.
        context = get_context("spawn")
        ready = context.Barrier(count)
        self._pool = ProcessPoolExecutor(
            count, context, initializer=start_worker, initargs=(spec, tokenizer_json, ready)
        )
        self._count = count
        self._pending: list[tuple[RenderArgs, asyncio.Future[list[int]]]] = []
        # Start every worker now rather than at the first long prompts; `ready` holds each
        # one's first task until all have loaded, so that one reaches each.
        try:
            for future in [self._pool.submit(worker_started) for _ in range(count)]:
                future.result()
        except BaseException:
            self.close()
            raise

    async def render(self, args: RenderArgs) -> list[int]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # after every render asked for in this turn of the loop
        future: asyncio.Future[list[int]] = loop.create_future()
        self._pending.append((args, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        size = min(_BATCH, -(-len(pending) // self._count))  # a share for every worker
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            try:
                task = self._pool.submit(render_batch, [args for args, _ in batch])
            except (BrokenProcessPool, RuntimeError) as error:  # broken, or closed
                for _, future in batch:
                    future.set_exception(error)
                continue
            asyncio.wrap_future(task).add_done_callback(functools.partial(_deliver, batch))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _deliver(
    batch: list[tuple[RenderArgs, asyncio.Future[list[int]]]],
    done: asyncio.Future[list[list[int] | Exception]],
) -> None:
    for index, (_, future) in enumerate(batch):
        if future.done():
            continue  # its request went away
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        elif isinstance(result := done.result()[index], Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


def _templates(
    model_dir: Path, configured: str | dict[str, str] | None, override: Path | None
) -> dict[str, str]:
    """The chat templates by name, as transformers finds them."""
    if override is not None:
        return {"default": override.read_text()}
    templates = dict(configured) if isinstance(configured, dict) else {"default": configured or ""}
    if not templates.get("default"):
        raise ValueError(f"{model_dir} has no chat template; set chat_template in the config")
    return templates


def _check_template_kwargs(template_kwargs: Mapping[str, Any] | None) -> None:
    clash = sorted(_RESERVED.intersection(template_kwargs or ()))
    if clash:
        raise InvalidRequest(
            f"chat_template_kwargs cannot set {', '.join(clash)}", param="chat_template_kwargs"
        )


def _invalid(error: jinja2.TemplateError) -> InvalidRequest:
    # Templates reject what the model cannot take ("roles must alternate").
    return InvalidRequest(f"chat template: {error}", param="messages")


def _eos_token_ids(model_dir: Path, tokenizer_eos: int | None) -> frozenset[int]:
    """EOS ids from the tokenizer and from generation_config.json (often several)."""
    ids = {tokenizer_eos} if tokenizer_eos is not None else set()
    try:
        configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:
        configured = None  # no generation_config.json
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return frozenset(ids)
