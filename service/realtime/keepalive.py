"""Websocket keepalive for every socket of the process from one timer, instead of a task per socket.

Sanic's own keepalive is a task per connection (a sleep, a ping future, a wait_for): about 3 KB a
socket, and 10,000 timers. Here the sockets sit on a wheel of `SLOTS` buckets; every
`PING_INTERVAL / SLOTS` seconds one bucket's sockets are beaten, so each one is, every `PING_INTERVAL`
seconds. A beat pings the peer, or, when the previous ping (sent one interval before) is still
unanswered, cuts it off: the pong is due within `PING_INTERVAL` seconds, which is also Sanic's default
timeout and the documented one (docs/protocol.md). Pings are spread over the interval, not sent to
every socket in the same tick.

No I/O here: what a beat does is the member's business (connection.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("murmuration.ws")

PING_INTERVAL = 20.0  # seconds between pings, and the time a pong has to come back
SLOTS = 20


class Beating(Protocol):
    def beat(self) -> None:
        """Ping the peer, or cut it off if the previous ping went unanswered."""


class Keepalive:
    """Beats each member every `interval` seconds (to one step of `interval / slots`), starting one
    interval after it joins. The timer runs only while there are members."""

    __slots__ = ("count", "hand", "interval", "loop", "next_at", "step", "timer", "wheel")

    def __init__(self, interval: float = PING_INTERVAL, slots: int = SLOTS) -> None:
        self.interval = interval
        self.step = interval / slots
        self.wheel: list[set[Beating]] = [set() for _ in range(slots)]
        self.hand = 0  # the bucket beaten at the next tick
        self.count = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.next_at = 0.0

    def add(self, member: Beating) -> int:
        """Put `member` on the wheel; the returned slot is what `discard` needs."""
        # The bucket just beaten comes round again last: one interval (less at most a step) from now.
        slot = (self.hand - 1) % len(self.wheel)
        self.wheel[slot].add(member)
        self.count += 1
        if self.timer is None:
            self.loop = asyncio.get_running_loop()
            self.next_at = self.loop.time() + self.step
            self.timer = self.loop.call_at(self.next_at, self._tick)
        return slot

    def discard(self, member: Beating, slot: int) -> None:
        bucket = self.wheel[slot]
        if member in bucket:
            bucket.remove(member)
            self.count -= 1
        if self.count == 0:
            self.stop()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def tick(self) -> list[Beating]:
        """Advance the hand by one bucket: the members to beat now."""
        due = list(self.wheel[self.hand])
        self.hand = (self.hand + 1) % len(self.wheel)
        return due

    def _tick(self) -> None:
        for member in self.tick():
            try:
                member.beat()
            except Exception:  # one socket's failure must not stop every other socket's keepalive
                log.exception("a websocket keepalive beat failed")
        if self.count == 0 or self.loop is None:
            self.timer = None
            return
        # On a fixed schedule (a late tick does not push back every later one), never in the past.
        self.next_at = max(self.next_at + self.step, self.loop.time())
        self.timer = self.loop.call_at(self.next_at, self._tick)
