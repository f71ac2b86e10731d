"""The one module that imports the MongoDB driver (PyMongo's async API).

Everything else gets collections, ids and driver errors from here, so a change of driver (Motor
was replaced by `AsyncMongoClient` when Motor reached end of life) stays in one file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError

from .errors import BadRequest

__all__ = [
    "ASCENDING",
    "DESCENDING",
    "Collection",
    "Database",
    "DatabaseError",
    "Document",
    "DuplicateKeyError",
    "ObjectId",
    "OperationFailure",
    "ReturnDocument",
    "now",
    "parse_id",
]

log = logging.getLogger("murmuration.database")

Document = dict[str, Any]
Collection = AsyncCollection[Document]
DatabaseError = PyMongoError

# Collections whose changes are streamed to clients keep pre-images, so a delete or a lost
# permission can still be routed to the right subscribers and authorized against the old state.
STREAMED = ("contacts", "documents", "rooms", "messages", "orders", "presence")

INDEXES: dict[str, list[IndexModel]] = {
    "users": [IndexModel([("email", ASCENDING)], unique=True, name="email_unique")],
    "sessions": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
        IndexModel([("user", ASCENDING)], name="by_user"),
    ],
    "throttles": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    "contacts": [IndexModel([("owner", ASCENDING), ("_id", DESCENDING)], name="by_owner")],
}


def now() -> datetime:
    """The current UTC time at the millisecond precision BSON keeps, so what we answer is what we store."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_id(value: str, what: str = "id") -> ObjectId:
    """A client-supplied id as an ObjectId; anything else is a 400, never a query."""
    if not isinstance(value, str) or len(value) != 24:
        raise BadRequest(f"{what} must be a 24-character hex id")
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise BadRequest(f"{what} must be a 24-character hex id") from None


class Database:
    """The client and the application database, created at server start and closed at stop."""

    def __init__(self, url: str, name: str, app_name: str = "murmuration") -> None:
        # Majority writes survive a failover; tz_aware keeps every datetime in UTC.
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            url, tz_aware=True, w="majority", appname=app_name, serverSelectionTimeoutMS=10_000
        )
        self.db: AsyncDatabase[Document] = self.client[name]

    def __getitem__(self, name: str) -> Collection:
        return self.db[name]

    @property
    def users(self) -> Collection:
        return self.db["users"]

    @property
    def sessions(self) -> Collection:
        return self.db["sessions"]

    @property
    def throttles(self) -> Collection:
        return self.db["throttles"]

    @property
    def contacts(self) -> Collection:
        return self.db["contacts"]

    async def prepare(self) -> None:
        """Create collections (with pre-images where streamed) and indexes; safe to run on every start."""
        existing = set(await self.db.list_collection_names())
        for name in STREAMED:
            images = {"enabled": True}
            if name not in existing:
                try:
                    await self.db.create_collection(name, changeStreamPreAndPostImages=images)
                    continue
                except CollectionInvalid:
                    pass  # another worker created it first
            await self.db.command({"collMod": name, "changeStreamPreAndPostImages": images})
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()
