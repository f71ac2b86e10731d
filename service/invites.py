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

from .accounts import User, by_email
from .database import Database, Document, ObjectId, ReturnDocument, Session, now, parse_id
from .errors import Conflict, Forbidden, NotFound
from .mail.outbox import Outbox
from .pages import ROOM_FOR_ONE_MORE, newest_first
from .throttles import take

MAX_PER_INVITER = 200  # pending invites one user may have out at once
MAX_PER_ADDRESS = 100  # pending invites waiting for one address (all applied in one transaction)
INVITES_PER_HOUR = 20  # invites (each a letter to a stranger) one user may send per hour


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
        existing = await db.invites.find_one(key, {"by": 1}, session=session)
        if existing is None:
            await _may_invite(db, user, email, session)
        # The first inviter keeps it, while they may still invite there (another member re-adding the
        # address does not take it over); one who left the room hands it to whoever adds the address now.
        keeps = existing is not None and await _may_still(db, target, existing.get("by"), session)
        inviter = {"by": user.id, "by_name": user.name}
        found: Document | None = await db.invites.find_one_and_update(
            key,
            {
                "$set": {"role": target.role, **({} if keeps else inviter)},
                "$setOnInsert": {"created_at": stamp},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert found is not None
        if existing is None:
            params = {"invite": found["_id"], "by": user.name, "title": target.title}
            await outbox.queue("invite", email, params, session=session)
        return found, existing is None

    made, new = await db.transaction(work)
    if new:
        outbox.poke()
    return made


async def account_or_invite(db: Database, outbox: Outbox, user: User, target: Target, email: str) -> User | Invited:
    """The verified account of `email` (a leftover invite of it to `target` goes), or a pending invite
    of it to `target`: how sharing and adding a member find people by email."""
    found = (await by_email(db, [email])).get(email)
    if found is None:
        made = await invite(db, outbox, user, target, email)
        if made is not None:
            return Invited(made)
        found = (await by_email(db, [email])).get(email)  # verified meanwhile
        if found is None:
            raise Conflict("the account of this address cannot be read; an operator can repair it")
    await settled(db, email, target.id)
    return found


async def _may_still(db: Database, target: Target, by: object, session: Session) -> bool:
    """Whether `by` may still give access to `target` (owns the document, belongs to the room)."""
    if not isinstance(by, ObjectId):
        return False
    if target.kind == "document":
        return await db.documents.find_one({"_id": target.id, "owner._id": by}, {"_id": 1}, session=session) is not None
    return await db.rooms.find_one({"_id": target.id, "access": by}, {"_id": 1}, session=session) is not None


async def may_invite(db: Database, user: User, session: Session | None = None) -> None:
    """403 unless `user` has proven their own address: an invite mails a stranger in the inviter's name."""
    inviter = await db.users.find_one({"_id": user.id}, {"email_verified": 1}, session=session)
    if inviter is None or inviter.get("email_verified") is not True:
        raise Forbidden("verify your own address before inviting people by email")


async def _may_invite(db: Database, user: User, email: str, session: Session) -> None:
    """Whether `user` may send one more invite: a proven address, and within the bounds."""
    await may_invite(db, user, session)
    if await db.invites.count_documents({"by": user.id}, limit=MAX_PER_INVITER, session=session) >= MAX_PER_INVITER:
        raise Conflict(f"you have {MAX_PER_INVITER} pending invites; withdraw some (DELETE /invites/{{id}}) first")
    if await db.invites.count_documents({"email": email}, limit=MAX_PER_ADDRESS, session=session) >= MAX_PER_ADDRESS:
        raise Conflict(f"this address already has {MAX_PER_ADDRESS} pending invites")
    await take(db, {f"invite:by:{user.id}": INVITES_PER_HOUR}, 3600,
               f"at most {INVITES_PER_HOUR} invites an hour; try again later", session)  # fmt: skip


async def accept(db: Database, user: Document, email: str, session: Session) -> int:
    """Every invite waiting for `email` becomes access for `user`, who just proved they own it (in the
    caller's transaction); the invites go. Those whose inviter has lost the right to share, or whose
    document or room is full or gone, just go. The number that became access."""
    # The roster entry is written from the account: a name the shell left mistyped must not spoil it.
    uid, name = user["_id"], user["name"] if isinstance(user.get("name"), str) else ""
    applied = 0
    found = await db.invites.find({"email": email}, session=session).to_list()
    for invite in found:
        target, by = invite.get("target"), invite.get("by")
        if not isinstance(target, ObjectId) or not isinstance(by, ObjectId):
            continue  # a hand-made invite is never a query: it gives nothing
        if invite.get("kind") == "document":
            role = invite.get("role") if invite.get("role") in ("editor", "viewer") else "viewer"
            changed = await db.documents.update_one(
                {"_id": target, "owner._id": by, "access": {"$ne": uid}, **ROOM_FOR_ONE_MORE},
                {"$push": {"collaborators": {"_id": uid, "name": name, "role": role}},
                 "$addToSet": {"access": uid}},
                session=session,
            )  # fmt: skip
        elif invite.get("kind") == "room":
            changed = await db.rooms.update_one(
                {"_id": target, "access": {"$all": [by], "$ne": uid}, **ROOM_FOR_ONE_MORE},
                {"$push": {"members": {"_id": uid, "name": name}}, "$addToSet": {"access": uid}},
                session=session,
            )
        else:
            continue
        applied += changed.modified_count
    await db.invites.delete_many({"_id": {"$in": [invite["_id"] for invite in found]}}, session=session)
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


async def settled(db: Database, email: str, target: ObjectId) -> None:
    """`email` got `target` directly (a verified account now): an invite left from before goes."""
    await db.invites.delete_many({"email": email, "target": target})
