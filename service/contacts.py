"""Contacts: an address book per user; every query is scoped to its owner."""

from __future__ import annotations

import re

from models.contacts import ContactIn, ContactPatch

from .accounts import User
from .database import Database, Document, ReturnDocument, now, parse_id
from .errors import NotFound, ValidationFailed
from .pages import newest_first, one


async def create(db: Database, user: User, data: ContactIn) -> Document:
    stamp = now()
    doc = {"owner": user.id, **data.model_dump(), "created_at": stamp, "updated_at": stamp}
    result = await db.contacts.insert_one(doc)
    doc["_id"] = result.inserted_id
    return doc


async def search(
    db: Database, user: User, q: str | None, limit: int, after: str | None
) -> tuple[list[Document], str | None]:
    query: Document = {"owner": user.id}
    if q:
        # The search text is matched literally: escaped, it can never be a pattern or an operator.
        pattern = {"$regex": re.escape(q), "$options": "i"}
        query["$or"] = [{"name": pattern}, {"email": pattern}, {"company": pattern}]
    return await newest_first(db.contacts, query, limit, after)


async def get(db: Database, user: User, contact_id: str) -> Document:
    return await one(db.contacts, contact_id, {"owner": user.id}, "contact")


async def update(db: Database, user: User, contact_id: str, patch: ContactPatch) -> Document:
    changes = patch.changes()
    if not changes:
        raise ValidationFailed("send at least one field to change")
    doc = await db.contacts.find_one_and_update(
        {"_id": parse_id(contact_id), "owner": user.id},
        {"$set": {**changes, "updated_at": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise NotFound("contact not found")
    return doc


async def delete(db: Database, user: User, contact_id: str) -> None:
    result = await db.contacts.delete_one({"_id": parse_id(contact_id), "owner": user.id})
    if result.deleted_count == 0:
        raise NotFound("contact not found")
