"""Attempt windows in MongoDB (every instance sees them): logins, resets, resends, letters to an address."""

from __future__ import annotations

from datetime import timedelta

from .database import Database, Document, ReturnDocument, Session, now
from .errors import RateLimited


async def take(db: Database, slots: dict[str, int], window: int, message: str, session: Session | None = None) -> None:
    """Take one attempt in each window (a window that has ended starts again: its end is in the query,
    not left to the TTL reaper); 429 with `message` if any is full. Atomic, so concurrent attempts
    cannot outrun a limit."""
    stamp = now()
    fresh = stamp + timedelta(seconds=window)
    live = {"$and": [{"$eq": [{"$type": "$expires_at"}, "date"]}, {"$gt": ["$expires_at", stamp]},
                     {"$isNumber": "$failures"}]}  # fmt: skip
    for key, limit in slots.items():
        found: Document | None = await db.throttles.find_one_and_update(
            {"_id": key},
            [{"$set": {
                "failures": {"$cond": [live, {"$add": ["$failures", 1]}, 1]},
                "expires_at": {"$cond": [live, "$expires_at", fresh]},
            }}],
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )  # fmt: skip
        if found is not None and found["failures"] > limit:
            raise RateLimited((found["expires_at"] - stamp).total_seconds(), message)
