from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.text.reasoning import ReasoningSplitter

START, END = "<think>", "</think>"

# Tags, their pieces and whitespace, so that tags, near-misses and partial tags occur often.
texts = st.lists(
    st.sampled_from([START, END, "<", "</", "<thi", "think>", "nk>", "a", "b c", "\n", " ", "😀"]),
    max_size=12,
).map("".join)


@st.composite
def split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def run(pieces: list[str], *, starts_in_reasoning: bool = False) -> tuple[list[str], list[str]]:
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    reasoning, content = [], []
    for piece in [*pieces, None]:
        r, c = splitter.flush() if piece is None else splitter.push(piece)
        reasoning.append(r)
        content.append(c)
    return reasoning, content


def reference(text: str, *, starts_in_reasoning: bool) -> tuple[str, str]:
    """The module's rules applied to the whole text at once."""
    before, rest = "", text
    if not starts_in_reasoning:
        found = text.find(START)
        if found < 0:
            return "", text
        before, rest = text[:found].rstrip(), text[found + len(START) :]
    rest = rest.lstrip()
    if rest.startswith(START):
        rest = rest[len(START) :].lstrip()
    found = rest.find(END)
    if found < 0:
        return rest, before
    return rest[:found].rstrip(), before + rest[found + len(END) :].lstrip()


@given(st.data(), texts, st.booleans())
def test_any_split_gives_what_one_push_gives(
    data: st.DataObject, text: str, starts_in_reasoning: bool
) -> None:
    reasoning, content = run(data.draw(split(text)), starts_in_reasoning=starts_in_reasoning)
    whole_reasoning, whole_content = run([text], starts_in_reasoning=starts_in_reasoning)
    assert ("".join(reasoning), "".join(content)) == (
        "".join(whole_reasoning),
        "".join(whole_content),
    )
    assert ("".join(reasoning), "".join(content)) == reference(
        text, starts_in_reasoning=starts_in_reasoning
    )


@given(st.data(), texts)
def test_no_part_of_a_tag_is_sent_before_it_is_decided(data: st.DataObject, text: str) -> None:
    text = START + text + END
    reasoning, content = run(data.draw(split(text)))
    final_reasoning, final_content = reference(text, starts_in_reasoning=False)
    for sent, final in ((reasoning, final_reasoning), (content, final_content)):
        so_far = ""
        for piece in sent:
            so_far += piece
            assert final.startswith(so_far)  # nothing sent is ever taken back


@given(st.data(), st.text(st.characters(exclude_characters="<")))
def test_text_without_tags_is_content_unchanged(data: st.DataObject, text: str) -> None:
    reasoning, content = run(data.draw(split(text)))
    assert ("".join(reasoning), "".join(content)) == ("", text)


def test_qwen3_output_streamed_token_by_token() -> None:
    pieces = ["<think>", "\n", "The user", " greets", ".", "\n", "</think>", "\n\n", "Hello", "!"]
    reasoning, content = run(pieces)
    assert "".join(reasoning) == "The user greets."
    assert "".join(content) == "Hello!"


def test_a_partial_tag_is_held_until_decided() -> None:
    splitter = ReasoningSplitter()
    assert splitter.push("Hi <thi") == ("", "Hi")
    assert splitter.push("nk>plan</th") == ("plan", "")
    assert splitter.push("ink>done") == ("", "done")


def test_a_near_miss_of_a_tag_is_released_as_text() -> None:
    splitter = ReasoningSplitter()
    assert splitter.push("a <thi") == ("", "a")
    assert splitter.push("s is html") == ("", " <this is html")


def test_template_opened_block_ends_at_the_end_tag() -> None:
    reasoning, content = run(["Let me see", "</think>", "Paris."], starts_in_reasoning=True)
    assert ("".join(reasoning), "".join(content)) == ("Let me see", "Paris.")


def test_a_start_tag_written_again_after_the_template_wrote_it_is_dropped() -> None:
    reasoning, content = run(["<th", "ink>\nhmm</think>ok"], starts_in_reasoning=True)
    assert ("".join(reasoning), "".join(content)) == ("hmm", "ok")


def test_only_an_echoed_start_tag_is_dropped() -> None:
    splitter = ReasoningSplitter(starts_in_reasoning=True)
    assert splitter.push("<think>") == ("", "")
    assert splitter.flush() == ("", "")


def test_without_an_end_tag_everything_after_the_start_is_reasoning() -> None:
    reasoning, content = run(["Intro ", "<think>", "still thinking </thi"])
    assert ("".join(reasoning), "".join(content)) == ("still thinking </thi", "Intro")


def test_tags_after_the_first_block_are_content() -> None:
    reasoning, content = run(["<think>a</think>Use <think> tags.</think>"])
    assert ("".join(reasoning), "".join(content)) == ("a", "Use <think> tags.</think>")


def test_custom_tags() -> None:
    splitter = ReasoningSplitter("[THINK]", "[/THINK]")
    assert splitter.push("[THINK]x[/THINK]y") == ("x", "y")


@pytest.mark.parametrize(("start", "end"), [("", "</think>"), ("<think>", "")])
def test_empty_tags_are_refused(start: str, end: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        ReasoningSplitter(start, end)
