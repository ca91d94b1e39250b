"""Sampling the gateway with py-spy during a measured window, and summarising the samples.

`py-spy record --nonblocking` reads the process's memory without stopping it,
so the profile costs the gateway almost nothing; it samples every thread. The
`raw` format is collapsed stacks ("frame;frame;frame count"), which both
flame-graph tools and `summarise` below read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Starts py-spy on `pid` for `seconds`, writing collapsed stacks to `out`."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    command = [
        py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(collapsed: Path, top: int = 25) -> str:
    """The hottest functions: own samples (self) and samples anywhere on the stack (total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "no samples"
    lines = [f"{samples} samples; self% / total%, function (file)"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / samples:5.1f} / {100 * total[frame] / samples:5.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`function (path/to/file.py:123)` as `function (to/file.py)`: one entry per function."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    parts = match["file"].split("/")
    return f"{match['function']} ({'/'.join(parts[-2:])})"
