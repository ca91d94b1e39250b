"""`POST /v2/models/{model}[/versions/{version}]/generate` and `/generate_stream`:
Triton's generate API, as tensorrtllm_backend's `ensemble` model answers it.

A generate request is translated into the text completion it asks for
(`gateway/triton/translate.py`), which runs exactly as `/v1/completions` runs it
(the same checks, admission and owner); only the framing differs: Triton's body,
or its events. The model in the path is the served name or `ensemble`, version 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import orjson

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.serving.completions import Completions
from gateway.serving.runs import Run, Streamed, Whole
from gateway.triton.generate import GenerateEvents, WholeEvent, generate_body
from gateway.triton.protocol import GenerateRequest, ModelPath
from gateway.triton.translate import completion_request

ENSEMBLE = "ensemble"  # tensorrtllm_backend's model name, which clients call
VERSION = "1"


@dataclass(frozen=True, slots=True)
class TritonGenerate:
    completions: Completions

    async def create(
        self, body: GenerateRequest, request_id: str, path: ModelPath
    ) -> Streamed | Whole:
        served = self.completions.runner.model_name
        self._check_model(path, self.completions.runner.model_names)
        body.reject_unsupported()
        if body.stream and not path.stream_route:
            raise InvalidRequest(
                "generate answers once: use generate_stream for 'stream': true", param="stream"
            )
        completion = completion_request(body, served, stream=body.stream)
        run, _ = await self.completions.start(completion, request_id)
        prompt = "" if body.exclude_input_in_output else body.text_input
        names = (path.name, VERSION)
        if path.stream_route and body.stream:
            return Streamed(
                run, GenerateEvents(*names, logprobs=body.return_log_probs), (), False, False
            )
        if path.stream_route:
            (generation,) = run.generations
            event = WholeEvent(
                *names, generation.choice, prompt=prompt, logprobs=body.return_log_probs
            )
            return Streamed(run, event, (), False, False)
        return Whole(run, functools.partial(_body, run, names, prompt, body.return_log_probs))

    @staticmethod
    def _check_model(path: ModelPath, served: tuple[str, ...]) -> None:
        """Triton's errors: an unknown model is a 400, an unknown version of one a 404."""
        if path.name not in (*served, ENSEMBLE):
            raise InvalidRequest(f"Request for unknown model: '{path.name}' is not found")
        if path.version is not None and int(path.version) != int(VERSION):
            raise ModelNotFound(
                f"Request for unknown model: '{path.name}' version {path.version} is not found"
            )


async def _body(run: Run, names: tuple[str, str], prompt: str, logprobs: bool) -> bytes:
    (out,) = await run.collect()
    return orjson.dumps(generate_body(out, *names, prompt=prompt, logprobs=logprobs))
