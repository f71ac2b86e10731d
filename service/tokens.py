"""Single-use tokens sent by mail (verify an address, reset a password), stored only as hashes.

A token is created when its mail is written (never stored in clear, not even in the outbox), is good
for one use, and expires; the TTL index only tidies up: expiry is checked on every use.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from .database import Database, Document, ObjectId, Session, now

VERIFY = "verify"
RESET = "reset"


def token_hash(token: str) -> str:
    """The key a token (a session's, a mail's) is stored under. Any string hashes (one that is not
    UTF-8, with lone surrogates, included), so a made-up token is just an unknown key."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def issue(db: Database, kind: str, user: ObjectId, email: str, ttl: timedelta) -> str:
    """A new token of `kind` for `user` at `email`; earlier ones of the same kind stay valid until they
    expire, so a mail sent twice (a retry after a lost answer) holds a working link either way."""
    token = f"mm{kind[0]}_" + secrets.token_urlsafe(32)
    stamp = now()
    record = {"_id": token_hash(token), "kind": kind, "user": user, "email": email, "created_at": stamp,
              "expires_at": stamp + ttl}  # fmt: skip
    await db.tokens.insert_one(record)
    return token


def _live(kind: str, token: str) -> Document:
    return {"_id": token_hash(token), "kind": kind, "expires_at": {"$gt": now()}}


async def peek(db: Database, kind: str, token: str) -> Document | None:
    """The live token's record, leaving it usable (to refuse a bad token before costly work)."""
    return await db.tokens.find_one(_live(kind, token))


async def redeem(
    db: Database, kind: str, token: str, session: Session | None = None, user: ObjectId | None = None
) -> Document | None:
    """The token's record, used up (None if unknown, expired, already used, or not `user`'s when given):
    one caller wins."""
    query = _live(kind, token) if user is None else {**_live(kind, token), "user": user}
    found: Document | None = await db.tokens.find_one_and_delete(query, session=session)
    if found is None or not isinstance(found.get("user"), ObjectId) or not isinstance(found.get("email"), str):
        return None  # a record the shell made without its fields proves nothing
    return found


async def revoke(db: Database, kind: str, user: ObjectId, session: Session | None = None) -> None:
    """Every outstanding token of `kind` for `user` (a password reset ends the others)."""
    await db.tokens.delete_many({"kind": kind, "user": user}, session=session)
