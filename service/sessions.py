"""The sessions a user can see and end. A session's public id is derived from its key (the token's
hash), so it names the session without being a key to it, and sessions made before ids existed
have one too."""

from __future__ import annotations

import hashlib

from .accounts import User
from .database import Database, Document, now
from .errors import NotFound


def public_id(key: str) -> str:
    return hashlib.sha256(f"session:{key}".encode()).hexdigest()[:24]


async def mine(db: Database, user: User) -> list[Document]:
    """Every live session of `user`, newest first (at most MAX_SESSIONS exist; an expired one the TTL
    reaper has not removed yet is not live)."""
    live = {"user": user.id, "expires_at": {"$gt": now()}}
    return await db.sessions.find(live).sort("created_at", -1).to_list()


async def end(db: Database, user: User, session_id: str) -> str:
    """End one of `user`'s sessions by its public id; its key (404 if it is not theirs, or over)."""
    for session in await db.sessions.find({"user": user.id}, {"_id": 1}).to_list():
        key = session["_id"]  # a hand-made one may not be a string: it is named, and ended, all the same
        if public_id(str(key)) == session_id:
            await db.sessions.delete_one({"_id": key})
            return str(key)
    raise NotFound("session not found")
