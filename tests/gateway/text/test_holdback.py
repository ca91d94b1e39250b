from __future__ import annotations

import pytest

from gateway.text.holdback import held_back


@pytest.mark.parametrize(
    ("buffer", "markers", "held"),
    [
        ("Sure.\nUs", ["\nUser:"], 3),  # "\nUs" may become the marker
        ("Sure.\nUx", ["\nUser:"], 0),  # it cannot any more
        ("a <th", ["<think>", "</think>"], 3),
        ("a </", ["<think>", "</think>"], 2),
        ("<think>", ["<think>"], 0),  # a whole marker is the matcher's, not held back
        ("anything", [], 0),
    ],
)
def test_holds_back_the_longest_end_that_may_start_a_marker(
    buffer: str, markers: list[str], held: int
) -> None:
    assert held_back(buffer, markers) == held
