"""The generate request: tensorrtllm_backend's `ensemble` inputs, as top-level JSON fields.

Triton passes a generate body's fields to the model as its input tensors, so the
fields are the ensemble's inputs (`all_models/inflight_batcher_llm/ensemble`), under
both of their names where a release renamed one (`random_seed`/`seed`,
`min_length`/`min_tokens`). A tensor may be sent as a scalar or as a one-element
list; stop and bad words as a string or a list of strings. Any other field is a 400:
an input this gateway ignored could change the output unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import InvalidRequest, UnsupportedParameter

_WORD_LISTS = frozenset({"stop_words", "bad_words"})
_UINT64 = 2**64 - 1


@dataclass(frozen=True, slots=True)
class ModelPath:
    """What a generate route's path names: `/v2/models/{name}[/versions/{version}]/...`."""

    name: str
    version: str | None  # digits, or None: the latest
    stream_route: bool  # `generate_stream`: server-sent events


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_input: Annotated[str, Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)]
    stop_words: str | list[str] = ""
    bad_words: str | list[str] = ""
    stream: bool = False
    exclude_input_in_output: bool = False
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_k: Annotated[int, Field(ge=0)] = 0
    top_p: Annotated[float, Field(ge=0, le=1)] = 0.0  # 0: no top-p, as in TensorRT-LLM
    repetition_penalty: Annotated[float, Field(gt=0, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    random_seed: Annotated[int, Field(ge=0, le=_UINT64)] | None = None
    seed: Annotated[int, Field(ge=0, le=_UINT64)] | None = None
    min_length: Annotated[int, Field(ge=0)] | None = None
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    end_id: Annotated[int, Field(ge=-1)] | None = None
    pad_id: int | None = None  # pads batched output tensors: no effect on text
    beam_width: Annotated[int, Field(ge=1)] = 1
    num_return_sequences: Annotated[int, Field(ge=1)] = 1
    length_penalty: float | None = None  # scores beams: no effect on one sequence
    return_log_probs: bool = False
    return_context_logits: bool = False
    return_generation_logits: bool = False
    return_perf_metrics: bool = False
    parameters: dict[str, Any] | None = None  # Triton's request parameters

    @model_validator(mode="before")
    @classmethod
    def _known_inputs(cls, data: Any) -> Any:
        """A clear 400 naming an input the ensemble has and this gateway lacks, or a typo;
        one-element lists (a tensor of shape [1]) as their element."""
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise UnsupportedParameter(
                f"unsupported input '{unknown[0]}'; the inputs served are: "
                + ", ".join(cls.model_fields),
                param=unknown[0],
            )
        return {
            key: value[0]
            if isinstance(value, list) and len(value) == 1 and key not in _WORD_LISTS
            else value
            for key, value in data.items()
        }

    @property
    def stop_strings(self) -> list[str]:
        return _words(self.stop_words)

    @property
    def seed_value(self) -> int | None:
        return self.seed if self.seed is not None else self.random_seed

    @property
    def min_new_tokens(self) -> int | None:
        return self.min_tokens if self.min_tokens is not None else self.min_length

    def reject_unsupported(self) -> None:
        """What the ensemble does and this gateway cannot: a 400, never a different output."""
        if self.beam_width > 1:
            raise UnsupportedParameter(
                f"beam_width {self.beam_width} is not supported: beam search is not "
                "implemented, only beam_width 1 (sampling or greedy)",
                param="beam_width",
            )
        if self.num_return_sequences > 1:
            raise UnsupportedParameter(
                "num_return_sequences above 1 is not supported", param="num_return_sequences"
            )
        if _words(self.bad_words):
            raise UnsupportedParameter("bad_words is not supported", param="bad_words")
        for name in ("return_context_logits", "return_generation_logits", "return_perf_metrics"):
            if getattr(self, name):
                raise UnsupportedParameter(f"{name} is not supported", param=name)
        if self.parameters:
            raise UnsupportedParameter(
                "request 'parameters' are not supported: send the ensemble's inputs as "
                "top-level fields",
                param="parameters",
            )
        for new, old in (("seed", "random_seed"), ("min_tokens", "min_length")):
            if getattr(self, new) is not None and getattr(self, old) is not None:
                raise InvalidRequest(f"give '{new}' or '{old}', not both", param=new)


def _words(words: str | list[str]) -> list[str]:
    """The ensemble's word list: each string one word or phrase; empty ones are none."""
    listed = [words] if isinstance(words, str) else words
    return [word for word in listed if word]
