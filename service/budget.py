"""The write budget: bytes of oplog one user may cost per minute, whatever the route or socket.

The resume window is the oplog's, shared by everyone (docs/operations.md). Each write costs about three
times what it stores (the change, its pre-image, a revision) plus a floor for small writes; a cost
known only afterwards (a document kept whole as a revision) is spent then, and later writes wait it off.
"""

from __future__ import annotations

from typing import Any

from .errors import RateLimited
from .ratelimit import RateLimiter

FLOOR = 1024  # bytes any write costs, however small


class WriteBudget:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.buckets = RateLimiter(per_minute, per_minute)

    def spend(self, user: Any, size: int) -> None:
        """Take what a write of `size` bytes costs before it is made; 429 if the budget is used up."""
        cost = min(3.0 * (size + FLOOR), float(self.per_minute))  # a single write always fits an idle budget
        wait = self.buckets.hit(str(user), cost)
        if wait:
            raise RateLimited(wait, f"write budget used up ({self.per_minute / (1 << 20):g} MiB a minute per user)")

    def owe(self, user: Any, size: int) -> None:
        """Take a cost learned after the write (it went through): later writes wait it off."""
        self.buckets.spend(str(user), float(size))
