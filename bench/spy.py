"""py-spy around the service's worker (BENCH_PROFILE=1): start and stop a recording, and summarize it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

RATE = 200  # samples a second


def record(pid: int, output: Path | str) -> subprocess.Popen[bytes]:
    """Start sampling `pid` into `output` (folded stacks); returns once py-spy has attached."""
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate",
                            str(RATE), "--format", "raw", "--output", str(output), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)  # py-spy gives no sign of having attached; it takes well under a second here
    return spy


def stop(spy: subprocess.Popen[bytes]) -> None:
    """SIGINT makes py-spy write what it sampled."""
    spy.send_signal(signal.SIGINT)
    spy.wait(30)


def summarize(folded: str, name: str, top: int = 25) -> str:
    """The functions where the samples were (self) and under which they were (inclusive), as % of all."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [short(frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            under[frame] += int(count)
    lines = [f"# py-spy profile of the worker: {name} ({total} samples at {RATE} Hz)", ""]
    for title, counter in (("Self", own), ("Inclusive", under)):
        lines += [f"## {title}", "", "| % | function (file) |", "| ---: | --- |"]
        lines += [f"| {100 * n / max(total, 1):.1f} | `{f}` |" for f, n in counter.most_common(top)]
        lines.append("")
    return "\n".join(lines)


def short(frame: str) -> str:
    """`function (path/to/file.py:12)` as `function (file.py)`: a function's lines count together."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})" if where else function
