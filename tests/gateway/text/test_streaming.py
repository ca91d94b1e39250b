from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from engines.base import FinishReason, TokenLogprob
from gateway.text.detokenizer import IncrementalDetokenizer
from gateway.text.reasoning import ReasoningSplitter
from gateway.text.stops import StopMatcher
from gateway.text.streaming import ChoiceStream
from gateway.text.tool_parsers import ToolCallDelta


def test_choice_stream_cuts_at_stop_and_reports_it(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("One. Two. Three.", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), StopMatcher([" Two"]))
    text = ""
    for token_id in ids:
        text += choice.push([token_id]).content
        if choice.finish_reason:
            break
    assert (text, choice.finish_reason) == ("One.", "stop")
    assert choice.tokens < len(ids)


def test_choice_stream_finish_releases_held_text(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("ends with T", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), StopMatcher([" The end"]))
    assert choice.push(ids).content == "ends with"
    assert choice.finish(FinishReason.LENGTH).content == " T"
    assert choice.finish_reason == "length"


class _Tools:
    """A tool parser that takes everything after "CALL" as one call named f."""

    def __init__(self) -> None:
        self.calls = 0

    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        if "CALL" not in text:
            return text, []
        self.calls += 1
        before, _, args = text.partition("CALL")
        return before, [ToolCallDelta(0, "call_1", "f", args)]

    def flush(self) -> tuple[str, list[ToolCallDelta]]:
        return "", []


def test_a_choice_with_tool_calls_finishes_with_tool_calls(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("Sure CALL{}", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), tools=_Tools())
    delta = choice.push(ids)
    assert (delta.content, delta.tool_calls) == ("Sure ", [ToolCallDelta(0, "call_1", "f", "{}")])
    choice.finish(FinishReason.STOP)
    assert choice.finish_reason == "tool_calls"


def test_a_truncated_tool_call_finishes_with_length(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), tools=_Tools())
    choice.push(tokenizer.encode("CALL{", add_special_tokens=False).ids)
    choice.finish(FinishReason.LENGTH)
    assert choice.finish_reason == "length"


def test_reasoning_is_split_from_content(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tokenizer.encode("<think>hmm</think>Yes", add_special_tokens=False).ids
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), reasoning=ReasoningSplitter())
    pushed, final = choice.push(ids), choice.finish(FinishReason.STOP)
    assert (pushed.reasoning + final.reasoning, pushed.content + final.content) == ("hmm", "Yes")


def test_reasoning_tokens_run_from_the_start_tags_last_token_to_the_end_tag(
    model_dir: Path,
) -> None:
    """Its first tokens ("<", "think") are the start tag only once the tag is whole."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    before, block, after = ids("Sure. "), ids("<think>hmm, let me see</think>"), ids(" Yes")
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []), reasoning=ReasoningSplitter())
    for token in [*before, *block, *after]:  # one token a step, as engines send them
        choice.push([token])
    assert block[: len(ids("<think>"))] == ids("<think>")
    assert choice.reasoning_tokens == len(block) - len(ids("<think>")) + 1
    assert choice.tokens == len(before) + len(block) + len(after)


def test_logprobs_come_with_the_tokens_they_are_of(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    choice = ChoiceStream(0, IncrementalDetokenizer(tokenizer, []))
    logprobs = [TokenLogprob(-0.5)]
    delta = choice.push([42], logprobs)
    assert (list(delta.token_ids), delta.logprobs) == ([42], logprobs)
