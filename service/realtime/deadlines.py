"""Many deadlines on one timer: the expiry of every socket's login session.

A `loop.call_later` per socket (a uvloop TimerHandle and its libuv timer) was about 0.6 KB a socket;
an entry here is a small list in one heap, and the loop holds one timer, for the earliest deadline.
A cancelled entry lets go of its member at once and leaves the heap when it comes up, or when
cancelled entries are most of it (connections come and go far more often than sessions expire).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from typing import Any, Protocol

log = logging.getLogger("murmuration.ws")

# [when (the loop's clock), sequence (ties never compare members), member or None once cancelled]
Entry = list[Any]


class Expiring(Protocol):
    def expire(self) -> None: ...


class Deadlines:
    __slots__ = ("heap", "live", "loop", "order", "timer", "timer_at")

    def __init__(self) -> None:
        self.heap: list[Entry] = []
        self.live = 0
        self.order = itertools.count()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def add(self, delay: float, member: Expiring) -> Entry:
        """Call `member.expire()` in `delay` seconds, unless cancelled first."""
        loop = self.loop = asyncio.get_running_loop()
        entry: Entry = [loop.time() + max(0.0, delay), next(self.order), member]
        heapq.heappush(self.heap, entry)
        self.live += 1
        self._arm()
        return entry

    def cancel(self, entry: Entry) -> None:
        if entry[2] is None:
            return
        entry[2] = None
        self.live -= 1
        if self.live == 0:
            self.stop()
        elif len(self.heap) > 64 and self.live * 2 < len(self.heap):
            self.heap = [kept for kept in self.heap if kept[2] is not None]
            heapq.heapify(self.heap)

    def stop(self) -> None:
        """Forget every deadline (their members are never told)."""
        for entry in self.heap:
            entry[2] = None  # so that cancelling one later changes nothing
        self.heap.clear()
        self.live = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        """The timer set for the earliest deadline (cancelled entries at the top are dropped)."""
        heap = self.heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        if not heap or self.loop is None:
            self.stop()
            return
        first = heap[0][0]
        if self.timer is not None and self.timer_at == first:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = first
        self.timer = self.loop.call_at(first, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self.loop is None:
            return
        now = self.loop.time()
        while self.heap and self.heap[0][0] <= now:
            entry = heapq.heappop(self.heap)
            member = entry[2]
            if member is None:
                continue
            entry[2] = None
            self.live -= 1
            try:
                member.expire()
            except Exception:  # one member's failure must not keep the others from expiring
                log.exception("an expiry failed")
        self._arm()
