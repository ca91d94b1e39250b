"""Prompts to token ids and back, with the model's own tokenizer and chat template.

Rendering and encoding run in a small thread pool so that a burst of long
prompts does not stall the event loop: the Rust tokenizer releases the GIL
while it encodes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
from transformers import AutoTokenizer, GenerationConfig

from gateway.detokenizer import IncrementalDetokenizer
from gateway.errors import InvalidRequest

log = logging.getLogger(__name__)


class PromptRenderer:
    def __init__(self, model_dir: Path, chat_template: Path | None = None, workers: int = 2):
        self._tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        if chat_template is not None:
            self._tokenizer.chat_template = chat_template.read_text()
        if not self._tokenizer.chat_template:
            raise ValueError(f"{model_dir} has no chat template; set chat_template in the config")
        self._backend = self._tokenizer.backend_tokenizer
        self.eos_token_ids = _eos_token_ids(model_dir, self._tokenizer.eos_token_id)
        self.vocab_size: int = len(self._tokenizer)
        # Templates written for tool use read a `tools` variable; others drop tools silently.
        self.renders_tools = "tools" in self._tokenizer.chat_template
        self._token_texts: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prompt")

    async def render(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        loop = asyncio.get_running_loop()
        render = functools.partial(
            self.render_sync,
            messages,
            tools=tools,
            template_kwargs=template_kwargs,
            add_generation_prompt=add_generation_prompt,
        )
        return await loop.run_in_executor(self._pool, render)

    def render_sync(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        template_kwargs: dict[str, Any] | None = None,
        add_generation_prompt: bool = True,
    ) -> list[int]:
        try:
            text = self._tokenizer.apply_chat_template(
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                tokenize=False,
                **(template_kwargs or {}),
            )
        except jinja2.TemplateError as error:
            # Templates reject what the model cannot take ("roles must alternate").
            raise InvalidRequest(f"chat template: {error}", param="messages") from error
        # The template already wrote any BOS text: adding special tokens would double it.
        ids: list[int] = self._backend.encode(text, add_special_tokens=False).ids
        return ids

    async def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        loop = asyncio.get_running_loop()
        encode = functools.partial(self._backend.encode, add_special_tokens=add_special_tokens)
        encoding = await loop.run_in_executor(self._pool, encode, text)
        ids: list[int] = encoding.ids
        return ids

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
