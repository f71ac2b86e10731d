"""Chat: rooms, members, messages (idempotent by `client_id`), read markers.

A room keeps `access`, its member ids, like a document; each message keeps the `access` of its room
when it was sent, so routing it needs no lookup and a member removed before a message never gets it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from models.common import Unreadable
from models.rooms import MessageIn, RoomIn, room_out

from . import invites
from .accounts import User, by_email
from .database import DESCENDING, Database, Document, DuplicateKeyError, ObjectId, ReturnDocument, now, parse_id
from .errors import Conflict, Forbidden, RateLimited, ValidationFailed
from .invites import Invited, Target
from .mail.outbox import Outbox
from .pages import ROOM_FOR_ONE_MORE, drop_reader, newest_first, one, refuse_full

TYPING_SECONDS = 6
# Unread messages are counted up to this (the room list shows "100+"): counting costs what a page
# costs, however busy a room someone was added to.
UNREAD_CAP = 100


async def create(db: Database, outbox: Outbox, user: User, data: RoomIn) -> tuple[Document, list[Document]]:
    """The room, with the members that are verified accounts, and an invite for each other address."""
    emails = sorted(set(data.members) - {user.email})
    found = await by_email(db, emails)
    if any(email not in found for email in emails):
        await invites.may_invite(db, user)
    members = [user.ref()] + [found[email].ref() for email in emails if email in found]
    doc: Document = {
        "name": data.name,
        "members": members,
        "access": [member["_id"] for member in members],
        "created_by": user.ref(),
        "created_at": now(),
    }
    doc["_id"] = (await db.rooms.insert_one(doc)).inserted_id
    made, room = [], Target("room", doc["_id"], data.name)
    for email in emails:
        if email not in found:
            try:
                invited = await invites.invite(db, outbox, user, room, email)
                if invited is None:  # verified meanwhile: a member after all
                    await add_member(db, outbox, user, str(doc["_id"]), email)
            except (Conflict, RateLimited):  # unreadable, or past the invite bounds: made without it
                continue
            made += [invited] if invited is not None else []
    return await joined(db, user, str(doc["_id"])), made


def _readable_room(doc: Document) -> None:
    room_out(doc)
    if type(doc.get("access")) is not list:
        raise Unreadable("access is not a list of member ids")


async def joined(db: Database, user: User, room_id: str) -> Document:
    """The room if `user` is a member; 404 for everyone else, so its existence is not leaked."""
    return await one(db.rooms, room_id, {"access": user.id}, "room", check=_readable_room)


async def listing(
    db: Database, user: User, limit: int, after: str | None
) -> tuple[list[tuple[Document, int, Document | None]], str | None]:
    """A page of the caller's rooms, each with (room, unread, last message); read markers in one query."""
    docs, next_cursor = await newest_first(db.rooms, {"access": user.id}, limit, after)
    keys = [_marker(doc["_id"], user.id) for doc in docs]
    found = db.reads.find({"_id": {"$in": keys}}, {"message": 1})
    markers = {m["_id"]: m.get("message") async for m in found if isinstance(m.get("message"), ObjectId)}
    summaries = await asyncio.gather(
        *(_summary(db, user, doc, markers.get(key)) for doc, key in zip(docs, keys, strict=True))
    )
    return [(doc, unread, last) for doc, (unread, last) in zip(docs, summaries, strict=True)], next_cursor


async def _summary(db: Database, user: User, room: Document, marker: ObjectId | None) -> tuple[int, Document | None]:
    """(unread, last message) of a room for `user`: messages by others after the read marker."""
    unread_query: Document = {"room": room["_id"], "author._id": {"$ne": user.id}}
    if marker is not None:
        unread_query["_id"] = {"$gt": marker}
    unread, last = await asyncio.gather(
        db.messages.count_documents(unread_query, limit=UNREAD_CAP + 1),
        db.messages.find_one({"room": room["_id"]}, sort=[("_id", DESCENDING)]),
    )
    return unread, last


async def add_member(db: Database, outbox: Outbox, user: User, room_id: str, email: str) -> Document | Invited:
    """Add a verified account (the room), or invite an address that is not one."""
    room = await joined(db, user, room_id)
    if email == user.email:
        return room  # already a member
    target = await invites.account_or_invite(db, outbox, user, Target("room", room["_id"], room.get("name", "")), email)
    if isinstance(target, Invited):
        return target
    if _reads(room, target.id):
        return room
    changed = await db.rooms.find_one_and_update(
        {"_id": room["_id"], "access": {"$ne": target.id}, **ROOM_FOR_ONE_MORE},
        {"$push": {"members": target.ref()}, "$addToSet": {"access": target.id}},
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        # Added meanwhile by someone else (answered as it stands), or full.
        again = await joined(db, user, room_id)
        if _reads(again, target.id):
            return again
        await refuse_full(db.rooms, room["_id"], "room")
    return changed


def _reads(room: Document, user_id: ObjectId) -> bool:
    """Whether `user_id` is among the room's readers (an `access` the shell made a scalar reads as none)."""
    access = room.get("access")
    return isinstance(access, list) and user_id in access


async def remove_member(db: Database, user: User, room_id: str, user_id: str) -> Document:
    """A member may leave; the room's creator may remove anyone."""
    room = await joined(db, user, room_id)
    target = parse_id(user_id, "user_id")
    if target != user.id and room["created_by"]["_id"] != user.id:
        raise Forbidden("only the room's creator can remove other members")
    return await drop_reader(db.rooms, room["_id"], target, "members", "member")


async def send(db: Database, user: User, room_id: str, data: MessageIn) -> tuple[Document, bool]:
    """Store a message; (message, created). A retry with the same `client_id` returns the first one.

    A unique index on (room, author, client_id) decides, so concurrent retries store exactly one
    message, and another member's `client_id` is just a different key.
    """
    room = await joined(db, user, room_id)
    doc: Document = {
        "room": room["_id"],
        "author": user.ref(),
        "text": data.text,
        "access": room["access"],
        "created_at": now(),
    }
    if data.client_id is not None:
        doc["client_id"] = data.client_id
    try:
        doc["_id"] = (await db.messages.insert_one(doc)).inserted_id
    except DuplicateKeyError:
        first = await db.messages.find_one({"room": room["_id"], "author._id": user.id, "client_id": data.client_id})
        if first is None:  # pragma: no cover - the unique index only fails for an existing message
            raise
        return first, False
    await _mark(db, user.id, room["_id"], doc["_id"])  # what you write, you have read
    return doc, True


async def history(
    db: Database, user: User, room_id: str, limit: int, after: str | None
) -> tuple[list[Document], str | None]:
    room = await joined(db, user, room_id)
    return await newest_first(db.messages, {"room": room["_id"]}, limit, after)


async def read(db: Database, user: User, room_id: str, message_id: str) -> None:
    room = await joined(db, user, room_id)
    message = await db.messages.find_one({"_id": parse_id(message_id, "message_id"), "room": room["_id"]}, {"_id": 1})
    if message is None:
        raise ValidationFailed(
            "message_id is not a message of this room",
            details=[{"field": "message_id", "message": "not in this room"}],
        )
    await _mark(db, user.id, room["_id"], message["_id"])


async def _mark(db: Database, user_id: ObjectId, room_id: ObjectId, message_id: ObjectId) -> None:
    # $max: a marker only moves forward, whatever order two devices' calls arrive in.
    await db.reads.update_one(
        {"_id": _marker(room_id, user_id)},
        {"$max": {"message": message_id}, "$set": {"at": now()}},
        upsert=True,
    )


def _marker(room_id: ObjectId, user_id: ObjectId) -> str:
    return f"{room_id}:{user_id}"


async def typing(db: Database, user: User, room_id: str) -> None:
    """Announce that `user` is typing: a record that expires, streamed to the room's members."""
    room = await joined(db, user, room_id)
    stamp = now()
    await db.signals.replace_one(
        {"_id": f"typing:{room['_id']}:{user.id}"},
        {
            "room": room["_id"],
            "user": user.id,
            "name": user.name,
            "access": room["access"],
            "at": stamp,
            "expires_at": stamp + timedelta(seconds=TYPING_SECONDS),
        },
        upsert=True,
    )
