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
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens < cost:
            self.buckets[key] = (tokens, now)
            return (cost - tokens) / self.per_second
        if len(self.buckets) >= self.max_keys and key not in self.buckets:
            self._forget_full(now)
        self.buckets[key] = (tokens - cost, now)
        return 0.0

    def spend(self, key: str, cost: float) -> None:
        """Take `cost` whatever is left (a cost known only after the work is done): the bucket may go
        into debt, down to one burst, which later calls wait off."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        self.buckets[key] = (max(-self.burst, tokens - cost), now)

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled holds no information: dropping it changes no answer.
        refill = self.burst / self.per_second
        self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < refill}
