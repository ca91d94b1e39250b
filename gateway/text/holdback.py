"""Hold-back: the end of a text that may still become a marker, kept until the next piece.

Stop strings, reasoning tags and tool-call tags all stream the same way: text that
could be the start of a marker waits, so that no part of a marker ever reaches the
client before it is known to be one.

    >>> held_back("Sure.\\nUs", ["\\nUser:"])
    3
"""

from __future__ import annotations

from collections.abc import Sequence


def held_back(buffer: str, markers: Sequence[str]) -> int:
    """Length of the longest end of `buffer` that begins one of `markers`: text that
    must wait, because the next piece may complete a marker there."""
    longest = max(map(len, markers), default=0)
    for size in range(min(len(buffer), longest - 1), 0, -1):
        tail = buffer[-size:]
        if any(marker.startswith(tail) for marker in markers):
            return size
    return 0
