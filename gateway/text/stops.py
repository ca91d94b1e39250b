"""Stop strings, matched on text and never leaked, not even in part.

Text that might be the start of a stop string is held back until the next
pieces decide it: "Hel" is held while "Hello" is a stop string, and released
once the text goes on as "Help". A matched stop string and everything after it
are dropped, unless the client asked for the stop string itself
(`include_stop_str_in_output`).

    >>> matcher = StopMatcher(["\\nUser:"])
    >>> matcher.push("Sure.\\nUs")
    ('Sure.', False)
    >>> matcher.push("er: hi")
    ('', True)
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.text.holdback import held_back


class StopMatcher:
    __slots__ = ("_held", "_include", "_stops", "matched")

    def __init__(self, stops: Sequence[str], *, include: bool = False) -> None:
        if any(not stop for stop in stops):
            raise ValueError("stop strings must not be empty")
        self._stops = tuple(stops)
        self._include = include
        self._held = ""
        self.matched: str | None = None  # the stop string found, once one is

    def push(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was found."""
        buffer = self._held + text
        start, end = self._earliest_stop(buffer)
        if start >= 0:
            self._held = ""
            self.matched = buffer[start:end]
            return buffer[: end if self._include else start], True
        keep = held_back(buffer, self._stops)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """Release held text once generation ended without a stop string."""
        held, self._held = self._held, ""
        return held

    def _earliest_stop(self, buffer: str) -> tuple[int, int]:
        """Start and end of the stop string that completes first (the longest, on a
        tie), or (-1, -1).

        Generation would have stopped where a stop string first *ends*, so the
        answer does not depend on how the text was split into pieces.
        """
        best_end, best_start = len(buffer) + 1, -1
        for stop in self._stops:
            start = buffer.find(stop)
            if start < 0:
                continue
            end = start + len(stop)
            if end < best_end or (end == best_end and start < best_start):
                best_end, best_start = end, start
        return best_start, best_end
