from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.text.stops import StopMatcher

ALPHABET = "ab\n😀"  # small, so that stop strings and near-misses occur often
texts = st.text(ALPHABET, max_size=40)
stops = st.lists(st.text(ALPHABET, min_size=1, max_size=4), min_size=1, max_size=3)


def reference(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """What a token-by-token generator would return: cut where a stop first ends."""
    for end in range(1, len(text) + 1):
        ending = [s for s in stop_strings if text[:end].endswith(s)]
        if ending:
            return text[: end - len(max(ending, key=len))], True
    return text, False


@st.composite
def split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def run(pieces: list[str], stop_strings: list[str]) -> tuple[list[str], bool]:
    matcher = StopMatcher(stop_strings)
    emitted = []
    for piece in pieces:
        out, stopped = matcher.push(piece)
        emitted.append(out)
        if stopped:
            return emitted, True
    emitted.append(matcher.flush())
    return emitted, False


@given(st.data(), texts, stops)
def test_output_equals_the_reference_however_the_text_is_split(
    data: st.DataObject, text: str, stop_strings: list[str]
) -> None:
    emitted, stopped = run(data.draw(split(text)), stop_strings)
    assert ("".join(emitted), stopped) == reference(text, stop_strings)


@given(st.data(), texts, stops)
def test_no_stop_string_or_prefix_of_one_is_ever_sent_early(
    data: st.DataObject, text: str, stop_strings: list[str]
) -> None:
    emitted, _ = run(data.draw(split(text)), stop_strings)
    final, _ = reference(text, stop_strings)
    sent = ""
    for out in emitted:
        sent += out
        # Everything sent so far is part of the final answer: nothing is taken back.
        assert final.startswith(sent)
        assert not any(stop in sent for stop in stop_strings)


def test_partial_match_is_held_then_released() -> None:
    matcher = StopMatcher(["Hello"])
    assert matcher.push("say Hel") == ("say ", False)
    assert matcher.push("p me") == ("Help me", False)


def test_held_text_is_released_at_the_end() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.push("done </") == ("done ", False)
    assert matcher.flush() == "</"


def test_stop_string_and_what_follows_are_dropped() -> None:
    matcher = StopMatcher(["\nUser:"])
    assert matcher.push("Sure.\nUs") == ("Sure.", False)
    assert matcher.push("er: hi") == ("", True)


def test_the_stop_string_itself_is_kept_when_asked_for() -> None:
    matcher = StopMatcher(["END"], include=True)
    assert matcher.push("done E") == ("done ", False)
    assert matcher.push("ND and more") == ("END", True)


def test_the_matched_stop_string_is_remembered() -> None:
    matcher = StopMatcher(["END", "\nUser:"])
    assert matcher.matched is None
    assert matcher.push("ok\nUs") == ("ok", False)
    assert matcher.matched is None
    assert matcher.push("er: hi") == ("", True)
    assert matcher.matched == "\nUser:"
