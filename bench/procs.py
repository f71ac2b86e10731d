"""What a server costs, read from /proc: CPU seconds and resident memory of every process it started."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def group(leader: int) -> list[int]:
    """The processes of `leader`'s session (the bench starts each server in its own): its workers too."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None and int(fields[3]) == leader:
            found.append(int(entry))
    return sorted(found)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of `pids` (ones that are gone count nothing)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_kb(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total


def _idle_and_total() -> tuple[int, int]:
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, all


def settle(idle: float = 0.7, within: float = 30.0) -> float:
    """Wait (up to `within` seconds) until the machine is at least `idle` idle over a second: a stage
    starts on a quiet machine, not while the previous one's processes still wind down. Returns the
    idle share last seen."""
    deadline = time.monotonic() + within
    while True:
        idle0, total0 = _idle_and_total()
        time.sleep(1)
        idle1, total1 = _idle_and_total()
        share = (idle1 - idle0) / max(total1 - total0, 1)
        if share >= idle or time.monotonic() > deadline:
            return share
