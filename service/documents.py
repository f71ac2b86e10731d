"""Documents: versioned with optimistic concurrency, shared with roles, every earlier version kept.

A document stores `access`, the ids of everyone who may read it (owner and collaborators), so
listing is one indexed query and a change event alone says who must hear of it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from models.documents import CollaboratorIn, DocumentIn, document_out

from . import invites
from .accounts import User
from .database import Database, Document, ObjectId, ReturnDocument, Session, now, parse_id
from .errors import Conflict, Forbidden, NotFound
from .invites import Invited, Target
from .mail.outbox import Outbox
from .pages import ROOM_FOR_ONE_MORE, drop_reader, newest_first, one, refuse_full

EDITORS = ("owner", "editor")


def role_of(doc: Document, user_id: ObjectId) -> str | None:
    """The user's role on `doc`, None if they have none; a hand-made owner or roster counts for nothing."""
    owner = doc.get("owner")
    if isinstance(owner, dict) and owner.get("_id") == user_id:
        return "owner"
    roster = doc.get("collaborators")
    for collaborator in roster if isinstance(roster, list) else []:
        if isinstance(collaborator, dict) and collaborator.get("_id") == user_id:
            return str(collaborator.get("role"))
    return None


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:80].rstrip("-") or "document"


async def create(db: Database, user: User, data: DocumentIn) -> Document:
    stamp = now()
    doc: Document = {
        **data.model_dump(),
        "slug": slugify(data.title),
        "version": 1,
        "owner": user.ref(),
        "collaborators": [],
        "access": [user.id],
        "created_at": stamp,
        "updated_at": stamp,
        "updated_by": user.ref(),
    }
    doc["_id"] = (await db.documents.insert_one(doc)).inserted_id
    return doc


async def visible(
    db: Database, user: User, document_id: str, session: Session | None = None, checked: bool = True
) -> Document:
    """The document if `user` may read it; 404 otherwise, so its existence is not leaked. `checked`:
    one stored in a shape the API cannot show is a 409 before anything is done with it."""
    check = document_out if checked else None
    return await one(db.documents, document_id, {"access": user.id}, "document", session, check=check)


async def readable(db: Database, user: User, document_id: str) -> Document:
    """Only the id of a document `user` may read (404 otherwise): what a subscription checks. A
    document shared with thousands weighs megabytes; its events are shaped (or skipped) as they come."""
    found = await db.documents.find_one({"_id": parse_id(document_id), "access": user.id}, {"_id": 1})
    if found is None:
        raise NotFound("document not found")
    return found


async def role(db: Database, user: User, document_id: str) -> tuple[ObjectId, str]:
    """(the document's id, the caller's role on it), reading only the owner and the caller's own roster
    entry, not a roster of thousands; 404 if the caller may not read it."""
    found = await db.documents.find_one(
        {"_id": parse_id(document_id), "access": user.id},
        {"owner._id": 1, "collaborators": {"$elemMatch": {"_id": user.id}}},
    )
    if found is None:
        raise NotFound("document not found")
    # Let in by `access` but on no roster (edited by hand): a reader, as everywhere else.
    return found["_id"], role_of(found, user.id) or "viewer"


async def listing(db: Database, user: User, limit: int, after: str | None) -> tuple[list[Document], str | None]:
    return await newest_first(db.documents, {"access": user.id}, limit, after)


def revision_of(doc: Document) -> Document:
    return {
        "document": doc["_id"],
        "version": doc["version"],
        "title": doc["title"],
        "body": doc.get("body", ""),
        "abstract": doc.get("abstract", ""),
        "tags": doc.get("tags", []),
        "edited_by": doc.get("updated_by", doc["owner"]),
        "edited_at": doc["updated_at"],
    }


def stored_size(doc: Document) -> int:
    """About what an edit of `doc` writes to the oplog beyond the request: its revision and images."""
    text = sum(len(doc.get(key) or "") for key in ("title", "body", "abstract") if isinstance(doc.get(key), str))
    return 2 * text


async def delete(db: Database, user: User, document_id: str) -> None:
    async def work(session: Session) -> None:
        doc = await visible(db, user, document_id, session)
        if role_of(doc, user.id) != "owner":
            raise Forbidden("only the owner can delete a document")
        await db.documents.delete_one({"_id": doc["_id"]}, session=session)
        await db.revisions.delete_many({"document": doc["_id"]}, session=session)
        await db.presence.delete_many({"document": doc["_id"]}, session=session)
        await invites.forget_target(db, doc["_id"], session)

    await db.transaction(work)


async def add_collaborator(
    db: Database, outbox: Outbox, user: User, document_id: str, data: CollaboratorIn
) -> Document | Invited:
    """Share with a verified account (the document), or invite an address that is not one."""
    doc = await visible(db, user, document_id)
    if role_of(doc, user.id) != "owner":
        raise Forbidden("only the owner can share a document")
    if data.email == user.email:
        raise Conflict("the owner is already on the document")
    shared = Target("document", doc["_id"], doc.get("title", ""), data.role)
    target = await invites.account_or_invite(db, outbox, user, shared, data.email)
    if isinstance(target, Invited):
        return target
    if target.id == user.id:
        raise Conflict("the owner is already on the document")
    entry = {**target.ref(), "role": data.role}
    # One atomic update whichever way: change the role of a collaborator, or add a new one.
    changed = await db.documents.find_one_and_update(
        {"_id": doc["_id"], "collaborators._id": target.id},
        {"$set": {"collaborators.$.role": data.role}},
        return_document=ReturnDocument.AFTER,
    ) or await db.documents.find_one_and_update(
        {"_id": doc["_id"], "collaborators._id": {"$ne": target.id}, **ROOM_FOR_ONE_MORE},
        {"$push": {"collaborators": entry}, "$addToSet": {"access": target.id}},
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        # Shared meanwhile by a concurrent request (answered as it stands), or full, or gone.
        again = await db.documents.find_one({"_id": doc["_id"], "access": target.id})
        if again is not None:
            return again
        await refuse_full(db.documents, doc["_id"], "document")
    if data.role == "viewer":
        await db.presence.update_many(
            {"document": doc["_id"], "user": target.id, "state": "editing"}, {"$set": {"state": "viewing"}}
        )
    return changed


async def remove_collaborator(db: Database, user: User, document_id: str, user_id: str) -> Document:
    """The owner removes anyone; a collaborator may remove themself (leave the document)."""
    doc = await visible(db, user, document_id)
    target = parse_id(user_id, "user_id")
    if role_of(doc, user.id) != "owner" and target != user.id:
        raise Forbidden("only the owner can remove collaborators")
    changed = await drop_reader(db.documents, doc["_id"], target, "collaborators", "collaborator")
    await db.presence.delete_many({"document": doc["_id"], "user": target})
    return changed


async def revisions(
    db: Database, user: User, document_id: str, limit: int, after: str | None
) -> tuple[list[Document], str | None]:
    doc = await visible(db, user, document_id)
    return await newest_first(db.revisions, {"document": doc["_id"]}, limit, after)


async def presence(db: Database, user: User, document_id: str) -> list[Document]:
    doc = await visible(db, user, document_id)
    return await db.presence.find({"document": doc["_id"]}).to_list()


def can_edit(doc: dict[str, Any], user_id: ObjectId) -> bool:
    return role_of(doc, user_id) in EDITORS
