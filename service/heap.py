"""The heap: Python's cyclic garbage collector kept off the long-lived objects of a worker.

A worker holding 10,000 sockets tracks about a million objects. Python starts a full collection
each time the objects promoted since the last one reach a quarter of the heap, and each walks all
of them: about a second on the 2-core bench machine under load, finding nothing (sockets, sessions
and subscriptions die by reference counting). While sockets connect it pays that again and again,
and every subscriber's event waits behind it (measured in bench runs: 13 full collections of 0.1 to
1.3 s while 10,000 sockets connected, none of them freeing anything).

The policy, every `GC_FREEZE_SECONDS`: what has survived so far goes to the permanent generation
(`gc.freeze`), which automatic collections never walk; they walk only what is younger. What turns
into cyclic garbage after it was frozen stays until a thaw: the permanent generation is put back and
collected once (`gc.unfreeze` + `gc.collect`), one full pause, timed and counted. A closed websocket
leaves about 40 such objects (11 KB: Sanic's protocol, request and tasks hold each other), so a thaw
comes every `GC_THAW_SECONDS`, and sooner once the sockets closed since the last one reach a quarter
of those open (at least `THAW_CLOSED`): what waits is bounded by the churn, as Python's own rule
bounds it by growth. `GC_FREEZE_SECONDS=0` leaves Python's own policy in place.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from typing import Any

from .metrics import GC_FROZEN, GC_PAUSES, GC_THAW_COLLECTED

log = logging.getLogger("murmuration.heap")

THAW_CLOSED = 1000  # sockets closed since the last thaw that make one due, whatever the number open
PUBLISH_EVERY = 1.0  # seconds between publications of the pauses when nothing is frozen


class Pauses:
    """Times every collection of generation 1 and 2 (young ones are too frequent and too short to be
    worth it). The callback only notes them: a collection starts wherever an allocation happens to
    be, including inside prometheus-client while it holds its lock (with several workers, one
    non-reentrant lock for every metric), and observing a metric there would wait on that lock for
    good. `publish` moves them to `murmuration_gc_pause_seconds` from the heap task."""

    def __init__(self) -> None:
        self.started = 0.0
        self.noted: deque[tuple[int, float]] = deque(maxlen=4096)  # (generation, seconds)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if generation == 0:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.noted.append((generation, time.perf_counter() - self.started))

    def publish(self) -> None:
        while self.noted:
            generation, seconds = self.noted.popleft()
            GC_PAUSES.labels(str(generation)).observe(seconds)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class Heap:
    """Freezes the survivors every `freeze_every` seconds and thaws them every `thaw_every`, or once
    enough sockets closed."""

    def __init__(self, freeze_every: float, thaw_every: float, pauses: Pauses | None = None) -> None:
        self.freeze_every = freeze_every
        self.thaw_every = thaw_every
        self.pauses = pauses or Pauses()
        self.freezes = 0
        self.thaws = 0
        self.reclaimed = 0  # objects the thaws found unreachable
        self.last_thaw = time.monotonic()
        self.open = 0  # websockets of this worker
        self.closed = 0  # websockets closed since the last thaw

    @property
    def enabled(self) -> bool:
        return self.freeze_every > 0

    def opened_socket(self) -> None:
        self.open += 1

    def closed_socket(self) -> None:
        self.open -= 1
        self.closed += 1

    def freeze(self) -> None:
        gc.freeze()
        self.freezes += 1

    def thaw(self) -> int:
        """Collect everything once, frozen objects included; what was found unreachable."""
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        gc.freeze()
        self.thaws += 1
        self.reclaimed += found
        self.last_thaw, self.closed = time.monotonic(), 0
        GC_FROZEN.set(gc.get_freeze_count())
        GC_THAW_COLLECTED.inc(found)
        log.info("heap: thawed %d frozen objects, %d unreachable collected in %.0f ms", frozen, found, took * 1000)
        return found

    def due(self, now: float) -> bool:
        return now - self.last_thaw >= self.thaw_every or self.closed >= max(THAW_CLOSED, self.open // 4)

    def step(self, now: float) -> None:
        if self.due(now):
            self.thaw()
        else:
            self.freeze()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.freeze_every if self.enabled else PUBLISH_EVERY)
            self.pauses.publish()
            if self.enabled:
                self.step(time.monotonic())

    def release(self) -> None:
        """Put the frozen objects back under Python's own policy (at shutdown)."""
        gc.unfreeze()

    def report(self) -> dict[str, Any]:
        if not self.enabled:
            return {"policy": "python"}
        return {
            "policy": "freeze",
            "freeze_seconds": self.freeze_every,
            "thaw_seconds": self.thaw_every,
            "freezes": self.freezes,
            "thaws": self.thaws,
            "reclaimed": self.reclaimed,
            "sockets": self.open,
            "closed_since_thaw": self.closed,
        }
