"""Resources readable by a list of users (`access`): one resource or 404, cursor pages newest
first (without ever counting a collection), and taking a reader off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from . import stored
from .database import DESCENDING, Collection, Document, ObjectId, ReturnDocument, Session, for_display, parse_id
from .errors import Conflict, NotFound
from .stored import Shape

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Readers of one document or room (owner and creator included): every change event carries the roster
# and its pre-image the `access` list, so it is bounded well under MongoDB's 16 MB.
MAX_READERS = 10_000
ROOM_FOR_ONE_MORE = {f"access.{MAX_READERS - 1}": {"$exists": False}}


async def refuse_full(collection: Collection, doc_id: ObjectId, what: str) -> NoReturn:
    """Why adding a reader to `doc_id` matched nothing: it is full (409), or it is gone (404)."""
    if await collection.find_one({"_id": doc_id, f"access.{MAX_READERS - 1}": {"$exists": True}}, {"_id": 1}):
        raise Conflict(f"this {what} already has {MAX_READERS:,} readers, the most it can have")
    raise NotFound(f"{what} not found")


async def one(
    collection: Collection,
    resource_id: str,
    scope: Mapping[str, Any],
    what: str,
    session: Session | None = None,
    check: Shape[Any] | None = None,
) -> Document:
    """The document with this id within `scope` (the caller's); 404 otherwise, so its existence is not
    leaked. With `check` (its API shape), one stored in a shape that cannot be read is a 409, before
    any code relies on its fields."""
    doc = await collection.find_one({"_id": parse_id(resource_id), **scope}, session=session)
    if doc is None:
        raise NotFound(f"{what} not found")
    if check is not None:
        stored.one(collection.name, doc, check)
    return doc


async def newest_first(
    collection: Collection, query: Mapping[str, Any], limit: int, after: str | None
) -> tuple[list[Document], str | None]:
    """One page of `query` by descending `_id`; `next` is the last item's id when more follow."""
    query = dict(query)
    # Only ObjectId ids: one the shell gave another type (a date, a string) could not be a cursor, nor
    # be asked for by id; such a document is left out, like any other that does not fit.
    query["_id"] = {"$type": "objectId"}
    if after is not None:
        query["_id"]["$lt"] = parse_id(after, "after")
    docs = await for_display(collection).find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
    if len(docs) > limit:
        docs = docs[:limit]
        return docs, str(docs[-1]["_id"])
    return docs, None


async def drop_reader(collection: Collection, doc_id: ObjectId, user_id: ObjectId, roster: str, what: str) -> Document:
    """Take `user_id` off the `roster` list (collaborators, members) and `access`, in one update; 404 if
    they were not on it. The change stream then tells them `leave`."""
    changed: Document | None = await collection.find_one_and_update(
        {"_id": doc_id, f"{roster}._id": user_id},
        {"$pull": {roster: {"_id": user_id}, "access": user_id}},
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        raise NotFound(f"this user is not a {what}")
    return changed
