"""`POST /v1/chat/completions`: validate, render, constrain, then stream or collect.

Everything that can be refused is refused before the response starts (fail
before sending 200): shutting down, unknown model, bad parameters, tools,
template errors, context length, admission. Errors after that are sent as an
SSE error event.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass

import orjson

from engines.base import Constraint, ConstraintKind
from gateway.errors import InvalidRequest
from gateway.openai.bodies import chat_choice
from gateway.openai.chunks import ChatChunks
from gateway.openai.logprobs import LogprobFormatter
from gateway.openai.protocol import ChatCompletionRequest
from gateway.openai.tools import NamedToolChoice
from gateway.serving import tool_prompts
from gateway.serving.prompts import PromptRenderer
from gateway.serving.runs import ChoiceFactory, Run, Runner, Streamed, Whole
from gateway.serving.sampling import response_constraint
from gateway.text.reasoning import ReasoningSplitter
from gateway.text.stops import StopMatcher
from gateway.text.streaming import ChoiceStream
from gateway.text.tool_parsers import TOOL_PARSERS


@dataclass(frozen=True, slots=True)
class ChatCompletions:
    runner: Runner

    async def create(self, body: ChatCompletionRequest, request_id: str) -> Streamed | Whole:
        run = await self.start(body, request_id)
        settings = self.runner.settings
        formatter = LogprobFormatter(self.runner.prompts.token_text) if body.logprobs else None
        reasoning = settings.reasoning_parser is not None
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            chunks = ChatChunks(
                completion_id, int(time.time()), body.model, logprobs=formatter, reasoning=reasoning
            )
            roles = [chunks.role(generation.choice) for generation in run.generations]
            return Streamed(run, chunks, roles, body.include_usage, body.continuous_usage)
        return Whole(run, functools.partial(_body, run, completion_id, body, formatter, reasoning))

    async def start(self, body: ChatCompletionRequest, request_id: str) -> Run:
        """Every check, the prompt rendered, admitted: the running choices, not yet framed."""
        arrival = time.perf_counter()
        runner = self.runner
        runner.check(body)
        body.reject_unsupported()
        self._check_size(body)
        calls_tools = bool(body.tools) and body.tool_choice != "none"
        tool_prompts.validate_tools(body.tools, body.tool_choice)
        constraint = self._constraint(body)
        prompt_ids = await self.render(body)
        choices = self._choices(body, calls_tools)
        return runner.start(body, request_id, [prompt_ids], constraint, choices, arrival)

    def _check_size(self, body: ChatCompletionRequest) -> None:
        settings = self.runner.settings
        if len(body.messages) > settings.max_messages:
            raise InvalidRequest(
                f"at most {settings.max_messages} messages are allowed", param="messages"
            )
        if sum(len(m.content or "") for m in body.messages) > settings.max_prompt_chars:
            raise InvalidRequest(
                f"the messages exceed {settings.max_prompt_chars} characters", param="messages"
            )

    def _constraint(self, body: ChatCompletionRequest) -> Constraint | None:
        """`response_format`'s grammar, or the one that forces tool calls."""
        choice = body.tool_choice
        forced = body.tools and (choice == "required" or isinstance(choice, NamedToolChoice))
        format_ = response_constraint(body.response_format)
        if not forced:
            return format_
        if format_ is not None:
            raise InvalidRequest(
                "'response_format' cannot be combined with a required or named 'tool_choice'",
                param="response_format",
            )
        assert body.tools is not None and choice is not None
        grammar = tool_prompts.tool_call_grammar(
            self.runner.settings.tool_parser,
            body.tools,
            choice,
            parallel_tool_calls=body.parallel_tool_calls,
        )
        return Constraint(ConstraintKind.GRAMMAR, grammar)

    async def render(self, body: ChatCompletionRequest) -> list[int]:
        """The prompt's token ids, as the model sees them."""
        prompts = self.runner.prompts
        messages = [m.template_dict() for m in body.messages]
        tools = [tool.template_dict() for tool in body.tools] if body.tools else None
        uses_tools = tools is not None or any(
            m.tool_calls or m.role == "tool" for m in body.messages
        )
        if uses_tools and not prompts.renders_tools:
            # The template knows nothing of tools: they travel as text in the parser's format.
            messages = tool_prompts.fallback_messages(
                messages, body.tools or [], self.runner.settings.tool_parser
            )
            tools = None
        return await prompts.render(
            messages, tools=tools, template_kwargs=body.chat_template_kwargs
        )

    def _choices(self, body: ChatCompletionRequest, calls_tools: bool) -> ChoiceFactory:
        prompts, settings = self.runner.prompts, self.runner.settings
        stops = body.stop_strings
        mistral_calls = calls_tools and settings.tool_parser == "mistral"

        def choice(index: int, prompt_ids: list[int]) -> ChoiceStream:
            return ChoiceStream(
                index,
                # Mistral marks calls with a special token, which decoding would drop.
                prompts.detokenizer(prompt_ids, skip_special=not mistral_calls),
                StopMatcher(stops, include=body.include_stop_str_in_output) if stops else None,
                _reasoning(prompts, prompt_ids) if settings.reasoning_parser == "think" else None,
                TOOL_PARSERS[settings.tool_parser]() if calls_tools else None,
            )

        return choice


async def _body(
    run: Run,
    completion_id: str,
    body: ChatCompletionRequest,
    formatter: LogprobFormatter | None,
    reasoning: bool,
) -> bytes:
    outputs = await run.collect()
    response = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [chat_choice(out, logprobs=formatter, reasoning=reasoning) for out in outputs],
        "usage": run.usage().body(),
    }
    return orjson.dumps(response)


def _reasoning(prompts: PromptRenderer, prompt_ids: list[int]) -> ReasoningSplitter:
    """Templates of thinking models often open the <think> block themselves."""
    opened = prompts.decode(prompt_ids[-4:]).rstrip().endswith("<think>")
    return ReasoningSplitter(starts_in_reasoning=opened)
