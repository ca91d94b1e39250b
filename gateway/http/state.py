"""What the routes need, built once in the lifespan: typed, not an `app.state` bag."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from engines.base import Engine, EngineLimits
from gateway.serving.admission import Admission
from gateway.serving.chat import ChatCompletions
from gateway.serving.completions import Completions
from gateway.serving.lifecycle import Lifecycle
from gateway.serving.messages import Messages
from gateway.serving.metrics import Metrics
from gateway.serving.prompts import PromptRenderer
from gateway.serving.response_store import ResponseStore
from gateway.serving.responses import Responses
from gateway.serving.runs import Runner
from gateway.serving.triton import TritonGenerate
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    engine: Engine
    limits: EngineLimits  # what the gateway serves: the engine's, capped at `max_model_len`
    chat: ChatCompletions
    completions: Completions
    messages: Messages
    responses: Responses
    prompts: PromptRenderer
    metrics: Metrics
    model_name: str  # the reported name
    model_names: tuple[str, ...]  # every name accepted as `model`, the reported one first
    lifecycle: Lifecycle
    admission: Admission
    settings: Settings
    triton: TritonGenerate

    @classmethod
    def of(cls, runner: Runner) -> Services:
        chat = ChatCompletions(runner)
        completions = Completions(runner)
        return cls(
            runner.engine,
            runner.limits,
            chat,
            completions,
            Messages(chat),
            Responses(
                chat,
                ResponseStore(
                    runner.settings.stored_responses, runner.settings.stored_response_bytes
                ),
            ),
            runner.prompts,
            runner.metrics,
            runner.model_name,
            runner.model_names,
            runner.lifecycle,
            runner.admission,
            runner.settings,
            TritonGenerate(completions),
        )


async def services(request: Request) -> Services:
    """FastAPI dependency: the services of the app that serves `request`.

    `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
    thread, a hop per request that starved `/health` under load.
    """
    found: Services = request.app.state.services
    return found
