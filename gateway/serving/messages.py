"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API.

A Messages request is translated into the chat completion it asks for
(`gateway/anthropic/translate.py`), which runs exactly as `/v1/chat/completions`
runs it (the same checks, template, tool parsing, admission and owner); only the
framing differs: Anthropic's events, or its message body.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import orjson

from gateway.anthropic.messages import MessageEvents, message_body
from gateway.anthropic.protocol import CountTokensRequest, MessagesRequest
from gateway.anthropic.translate import chat_request
from gateway.serving.chat import ChatCompletions
from gateway.serving.runs import Run, Streamed, Whole


@dataclass(frozen=True, slots=True)
class Messages:
    chat: ChatCompletions

    async def create(self, body: MessagesRequest, request_id: str) -> Streamed | Whole:
        chat = chat_request(body)
        run = await self.chat.start(chat, request_id)
        message_id = f"msg_{uuid.uuid4().hex}"
        if body.stream:
            events = MessageEvents(
                message_id, body.model, lambda: run.usage(running=True).completion_tokens
            )
            prelude = events.prelude(run.usage(running=True).prompt_tokens)
            return Streamed(run, events, prelude, False, False)
        return Whole(run, functools.partial(_body, run, message_id, body.model))

    async def count_tokens(self, body: CountTokensRequest) -> dict[str, int]:
        chat = chat_request(body)
        self.chat.runner.check(chat)
        return {"input_tokens": len(await self.chat.render(chat))}


async def _body(run: Run, message_id: str, model: str) -> bytes:
    (out,) = await run.collect()
    usage = run.usage()
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    return orjson.dumps(message_body(out, message_id, model, counts))
