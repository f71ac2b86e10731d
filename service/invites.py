"""Invites: access promised to an email address that is not a verified account yet.

Sharing a document or adding a room member with such an address stores an invite (one per address
and document or room) and mails the address once. Whoever proves they own the address (verifies
it, or resets the password of the account that holds it) gets every invite in the same transaction;
a squatter who registered the address first but cannot read its mail gets nothing.

Creating an invite writes the account of that address if there is one, and verifying it writes the
same record, so the two transactions conflict instead of passing each other: an invite is either
seen by the verification or finds the address verified and becomes access at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .accounts import User
from .database import Database, Document, ObjectId, ReturnDocument, Session, now, parse_id
from .errors import Conflict, NotFound
from .mail.outbox import Outbox
from .pages import ROOM_FOR_ONE_MORE, newest_first

MAX_PER_INVITER = 200  # pending invites one user may have out at once
MAX_PER_ADDRESS = 100  # pending invites waiting for one address (all applied in one transaction)


@dataclass(frozen=True, slots=True)
class Target:
    """What an invite is to: a document (with a role) or a room, and its title for the letter."""

    kind: str  # "document" | "room"
    id: ObjectId
    title: str
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Invited:
    """A share or an added member that became a pending invite (the address is not a verified account)."""

    invite: Document


async def invite(db: Database, outbox: Outbox, user: User, target: Target, email: str) -> Document | None:
    """The pending invite for `email` to `target` (made, or its role updated); None if the address
    is a verified account by now (the caller gives access directly)."""

    async def work(session: Session) -> tuple[Document | None, bool]:
        stamp = now()
        account = await db.users.find_one_and_update(
            {"email": email}, {"$set": {"invited_at": stamp}}, {"email_verified": 1}, session=session
        )
        if account is not None and account.get("email_verified") is True:
            return None, False
        key = {"email": email, "kind": target.kind, "target": target.id}
        existing = await db.invites.find_one(key, {"_id": 1}, session=session)
        if existing is None:
            await _room_for_one_more(db, user, email, session)
        found: Document | None = await db.invites.find_one_and_update(
            key,
            {"$set": {"role": target.role, "by": user.id, "by_name": user.name},
             "$setOnInsert": {"created_at": stamp}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )  # fmt: skip
        assert found is not None
        if existing is None:
            params = {"invite": found["_id"], "by": user.name, "title": target.title}
            await outbox.queue("invite", email, params, session=session)
        return found, existing is None

    made, new = await db.transaction(work)
    if new:
        outbox.poke()
    return made


async def _room_for_one_more(db: Database, user: User, email: str, session: Session) -> None:
    if await db.invites.count_documents({"by": user.id}, limit=MAX_PER_INVITER, session=session) >= MAX_PER_INVITER:
        raise Conflict(f"you have {MAX_PER_INVITER} pending invites; withdraw some (DELETE /invites/{{id}}) first")
    if await db.invites.count_documents({"email": email}, limit=MAX_PER_ADDRESS, session=session) >= MAX_PER_ADDRESS:
        raise Conflict(f"this address already has {MAX_PER_ADDRESS} pending invites")


async def accept(db: Database, user: Document, email: str, session: Session) -> int:
    """Every invite waiting for `email` becomes access for `user`, who just proved they own it (in the
    caller's transaction); the invites go. Those whose inviter has lost the right to share, or whose
    document or room is full or gone, just go. The number that became access."""
    uid = user["_id"]
    applied = 0
    for found in await db.invites.find({"email": email}, session=session).to_list(MAX_PER_ADDRESS):
        target, by = found.get("target"), found.get("by")
        if found.get("kind") == "document":
            role = found.get("role") if found.get("role") in ("editor", "viewer") else "viewer"
            changed = await db.documents.update_one(
                {"_id": target, "owner._id": by, "access": {"$ne": uid}, **ROOM_FOR_ONE_MORE},
                {"$push": {"collaborators": {"_id": uid, "name": user["name"], "role": role}},
                 "$addToSet": {"access": uid}},
                session=session,
            )  # fmt: skip
        elif found.get("kind") == "room":
            changed = await db.rooms.update_one(
                {"_id": target, "access": {"$all": [by], "$ne": uid}, **ROOM_FOR_ONE_MORE},
                {"$push": {"members": {"_id": uid, "name": user["name"]}}, "$addToSet": {"access": uid}},
                session=session,
            )
        else:
            continue
        applied += changed.modified_count
    await db.invites.delete_many({"email": email}, session=session)
    return applied


async def sent(db: Database, user: User, limit: int, after: str | None) -> tuple[list[Document], str | None]:
    """A page of the invites `user` has out, newest first."""
    return await newest_first(db.invites, {"by": user.id}, limit, after)


async def withdraw(db: Database, user: User, invite_id: str) -> None:
    """Withdraw an invite `user` sent (404 for anyone else's: its existence is not leaked)."""
    if (await db.invites.delete_one({"_id": parse_id(invite_id), "by": user.id})).deleted_count == 0:
        raise NotFound("invite not found")


async def forget_target(db: Database, target: ObjectId, session: Session | None = None) -> None:
    """A deleted document's invites go with it."""
    await db.invites.delete_many({"target": target}, session=session)
