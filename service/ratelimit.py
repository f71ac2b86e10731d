"""Token-bucket rate limiting, in memory, free of I/O (the caller supplies the clock)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """`rate` requests per minute per key, with bursts up to `burst`.

    Each worker process keeps its own buckets: a client spread over N instances gets at most N
    times the rate, which is the usual trade for not paying a database round trip per request.
    """

    __slots__ = ("buckets", "burst", "clock", "max_keys", "per_second")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = rate / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}
        self.max_keys = 100_000

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` from `key`'s bucket: 0.0 if allowed, else the seconds until it would be."""
        now = self.clock()
        tokens = self._level(key, now)
        if tokens < cost:
            self.buckets[key] = (tokens, now)
            return (cost - tokens) / self.per_second
        self._keep(key, tokens - cost, now)
        return 0.0

    def spend(self, key: str, cost: float) -> None:
        """Take `cost` whatever is left (a cost known only after the work is done): the bucket may go
        into debt, down to one burst, which later calls wait off."""
        now = self.clock()
        self._keep(key, max(-self.burst, self._level(key, now) - cost), now)

    def forget(self, key: str) -> None:
        """Drop `key`'s bucket (its owner is gone: a closed socket)."""
        self.buckets.pop(key, None)

    def _level(self, key: str, now: float) -> float:
        tokens, last = self.buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.per_second)

    def _keep(self, key: str, tokens: float, now: float) -> None:
        if len(self.buckets) >= self.max_keys and key not in self.buckets:
            self._forget_full(now)
        self.buckets[key] = (tokens, now)

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled holds no information: dropping it changes no answer. One still
        # short of full (in debt, say) is kept.
        self.buckets = {
            k: (tokens, last)
            for k, (tokens, last) in self.buckets.items()
            if tokens + (now - last) * self.per_second < self.burst
        }
