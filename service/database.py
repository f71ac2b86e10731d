"""The one module that imports the MongoDB driver (PyMongo's async API).

Everything else gets collections, ids and driver errors from here, so a change of driver (Motor
was replaced by `AsyncMongoClient` when Motor reached end of life) stays in one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, TypeVar

import pymongo
from bson import Binary, DatetimeConversion, ObjectId
from bson.codec_options import CodecOptions
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from .errors import BadRequest, Conflict, ServiceError, Unavailable
from .schemas import SCHEMAS

__all__ = [
    "ASCENDING",
    "DESCENDING",
    "Binary",
    "Collection",
    "Database",
    "DatabaseError",
    "Document",
    "DuplicateKeyError",
    "ObjectId",
    "OperationFailure",
    "ReturnDocument",
    "Session",
    "Stream",
    "bounded",
    "failure",
    "history_lost",
    "now",
    "parse_id",
    "transient",
]

log = logging.getLogger("murmuration.database")

Document = dict[str, Any]
Collection = AsyncCollection[Document]
Session = AsyncClientSession
Stream = AsyncChangeStream[Document]
DatabaseError = PyMongoError
T = TypeVar("T")

NAMESPACE_EXISTS = 48

# Change-stream errors after which resuming from the same token can never work.
HISTORY_LOST = {286, 280}  # ChangeStreamHistoryLost, ChangeStreamFatalError

# Collections whose changes are streamed to clients keep pre-images, so a delete or a lost
# permission can still be routed to the right subscribers and authorized against the old state.
# Sessions too: an update (its use recorded, its expiry moved in the shell) is told from its end by
# the session as it is after the change.
STREAMED = (
    "contacts", "documents", "rooms", "messages", "orders", "presence", "connections", "sessions", "awareness",
)  # fmt: skip

INDEXES: dict[str, list[IndexModel]] = {
    "users": [IndexModel([("email", ASCENDING)], unique=True, name="email_unique")],
    "sessions": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
        IndexModel([("user", ASCENDING), ("created_at", DESCENDING)], name="by_user_newest"),
    ],
    "throttles": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    "contacts": [IndexModel([("owner", ASCENDING), ("_id", DESCENDING)], name="by_owner")],
    "documents": [
        IndexModel([("access", ASCENDING), ("_id", DESCENDING)], name="by_reader"),
        # Live-edited documents due a save point, or a compaction: a handful, whatever the collection.
        IndexModel([("live.save_after", ASCENDING)], sparse=True, name="save_points"),
        IndexModel([("live.compact", ASCENDING)], sparse=True, name="compactions"),
    ],
    "revisions": [IndexModel([("document", ASCENDING), ("version", DESCENDING)], unique=True, name="by_document")],
    "presence": [
        IndexModel([("document", ASCENDING)], name="by_document"),
        IndexModel([("instance", ASCENDING)], name="by_instance"),
        IndexModel([("conn", ASCENDING)], name="by_connection"),
    ],
    "connections": [IndexModel([("instance", ASCENDING)], name="by_instance")],
    "instances": [IndexModel([("heartbeat_at", ASCENDING)], name="by_heartbeat")],
    "rooms": [IndexModel([("access", ASCENDING), ("_id", DESCENDING)], name="by_member")],
    "messages": [
        IndexModel([("room", ASCENDING), ("_id", DESCENDING)], name="by_room"),
        # Idempotent sends: one message per (room, author, client_id), whatever the number of retries;
        # the author is part of it, so nobody can claim (or fish for) another member's client_id.
        IndexModel(
            [("room", ASCENDING), ("author._id", ASCENDING), ("client_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
            name="client_id_per_author",
        ),
    ],
    "tokens": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
        IndexModel([("user", ASCENDING), ("kind", ASCENDING)], name="by_user"),
    ],
    "outbox": [
        IndexModel([("status", ASCENDING), ("next_at", ASCENDING)], name="work_queue"),
        IndexModel([("to", ASCENDING), ("created_at", DESCENDING)], name="by_recipient"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
    ],
    "invites": [
        IndexModel(
            [("email", ASCENDING), ("kind", ASCENDING), ("target", ASCENDING)], unique=True, name="one_per_target"
        ),
        IndexModel([("by", ASCENDING), ("_id", DESCENDING)], name="by_inviter"),
        IndexModel([("target", ASCENDING)], name="by_target"),
    ],
    "signals": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    # A document's CRDT log: one entry per seq (two instances cannot both write the same one).
    "doc_updates": [
        IndexModel([("document", ASCENDING), ("seq", ASCENDING)], unique=True, name="by_document"),
        IndexModel([("document", ASCENDING), ("clients", ASCENDING)], name="by_client"),  # whose a client id is
    ],
    "awareness": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
        IndexModel([("conn", ASCENDING)], name="by_connection"),
        IndexModel([("instance", ASCENDING)], name="by_instance"),
    ],
    "orders": [
        IndexModel([("owner", ASCENDING), ("_id", DESCENDING)], name="by_owner"),
        IndexModel([("owner", ASCENDING), ("idempotency_key", ASCENDING)], unique=True, name="idempotency_key"),
        IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="work_queue"),
        IndexModel([("transaction.id", ASCENDING)], sparse=True, name="by_transaction"),
        IndexModel([("status", ASCENDING), ("reconcile_after", ASCENDING)], name="reconcile_queue"),
    ],
}


# Indexes earlier versions created that are replaced (dropped at start if present).
OBSOLETE_INDEXES = {"messages": ["client_id_unique"], "sessions": ["by_user"]}


async def bounded(closing: Awaitable[Any], seconds: float) -> None:
    """Let `closing` (a close of the driver's) finish for up to `seconds`, then go on without it.

    Not `wait_for`: that cancels and then waits for the cancellation, and a cursor whose getMore was
    just cancelled can leave PyMongo's close waiting on a read that never comes (seen in the tests:
    the change-stream follower, cancelled at shutdown, hung its worker for good). The server drops an
    abandoned cursor by itself."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("a MongoDB close did not finish within %.0fs; going on without it", seconds)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("a MongoDB close failed: %s", type(task.exception()).__name__)


# Pages that are only shown (lists) decode dates without a zone: the driver's tz-aware decoding calls
# back into Python for every date (4x the cost of decoding a 20-contact page, py-spy); they are UTC and
# `models.common.iso` formats them as such. Code that compares dates reads through the default (aware).
_SHOWN: CodecOptions[Document] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
_shown: dict[str, Collection] = {}


def for_display(collection: Collection) -> Collection:
    """`collection` read with naive UTC dates, for documents that are only formatted for a response."""
    key = collection.full_name
    found = _shown.get(key)
    if found is None or found.database.client is not collection.database.client:
        found = _shown[key] = collection.with_options(codec_options=_SHOWN)
    return found


def now() -> datetime:
    """The current UTC time at the millisecond precision BSON keeps, so what we answer is what we store."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def history_lost(error: PyMongoError) -> bool:
    """True when a change stream cannot resume from its token: the oplog no longer holds it."""
    return isinstance(error, OperationFailure) and error.code in HISTORY_LOST


# Server errors that say "try again" (elections, shutdowns, timeouts, write conflicts), not "never".
TRANSIENT_CODES = {6, 7, 50, 89, 91, 112, 189, 251, 262, 9001, 10107, 11600, 11602, 13435, 13436}


def transient(error: PyMongoError) -> bool:
    """Whether the same operation may work later; False: MongoDB refuses it for what is stored."""
    if isinstance(error, ConnectionFailure | ExecutionTimeout | WTimeoutError):
        return True
    if error.has_error_label("TransientTransactionError") or error.has_error_label("RetryableWriteError"):
        return True
    return not isinstance(error, OperationFailure) or error.code in TRANSIENT_CODES


def failure(error: PyMongoError) -> ServiceError:
    """What a client is told when MongoDB refuses or fails a request or a frame (logged by type
    only: driver messages can carry hosts and query values)."""
    if isinstance(error, DuplicateKeyError):
        log.warning("a write hit the unique index %s", (error.details or {}).get("keyPattern"))
        return Conflict("this conflicts with a record that is already stored")
    if not transient(error):  # a validator, a field of the wrong type, a document grown too large...
        log.warning("MongoDB refused an operation for what is stored (code %s)", getattr(error, "code", None))
        return Conflict("the stored record does not allow this change; an operator can repair it")
    log.warning("database unavailable: %s", type(error).__name__)
    return Unavailable("the database is unavailable; try again shortly")


def parse_id(value: str, what: str = "id") -> ObjectId:
    """A client-supplied id as an ObjectId; anything else is a 400, never a query."""
    if not isinstance(value, str) or len(value) != 24:
        raise BadRequest(f"{what} must be a 24-character hex id")
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise BadRequest(f"{what} must be a 24-character hex id") from None


def _options(name: str) -> Document:
    options: Document = {}
    if name in SCHEMAS:
        options.update(validator=SCHEMAS[name], validationLevel="moderate", validationAction="error")
    if name in STREAMED:
        options["changeStreamPreAndPostImages"] = {"enabled": True}
    return options


class Database:
    """The client and the application database, created at server start and closed at stop."""

    def __init__(self, url: str, name: str, app_name: str = "murmuration") -> None:
        # Majority writes survive a failover; tz_aware keeps every datetime in UTC. A date Python cannot
        # hold (year 10000, written in the shell) is read as a DatetimeMS instead of failing the whole
        # read, so the document is left out like any other that does not fit, never fatal.
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            tz_aware=True,
            w="majority",
            appname=app_name,
            serverSelectionTimeoutMS=10_000,
            datetime_conversion=DatetimeConversion.DATETIME_AUTO,
        )
        self.db: AsyncDatabase[Document] = self.client[name]

    @cached_property
    def users(self) -> Collection:
        return self.db["users"]

    @cached_property
    def sessions(self) -> Collection:
        return self.db["sessions"]

    @cached_property
    def throttles(self) -> Collection:
        return self.db["throttles"]

    @cached_property
    def contacts(self) -> Collection:
        return self.db["contacts"]

    @cached_property
    def documents(self) -> Collection:
        return self.db["documents"]

    @cached_property
    def revisions(self) -> Collection:
        return self.db["revisions"]

    @cached_property
    def presence(self) -> Collection:
        return self.db["presence"]

    @cached_property
    def rooms(self) -> Collection:
        return self.db["rooms"]

    @cached_property
    def messages(self) -> Collection:
        return self.db["messages"]

    @cached_property
    def reads(self) -> Collection:
        return self.db["reads"]

    @cached_property
    def tokens(self) -> Collection:
        return self.db["tokens"]

    @cached_property
    def outbox(self) -> Collection:
        return self.db["outbox"]

    @cached_property
    def invites(self) -> Collection:
        return self.db["invites"]

    @cached_property
    def signals(self) -> Collection:
        return self.db["signals"]

    @cached_property
    def orders(self) -> Collection:
        return self.db["orders"]

    @cached_property
    def connections(self) -> Collection:
        return self.db["connections"]

    @cached_property
    def doc_updates(self) -> Collection:
        return self.db["doc_updates"]

    @cached_property
    def doc_snapshots(self) -> Collection:
        return self.db["doc_snapshots"]

    @cached_property
    def awareness(self) -> Collection:
        return self.db["awareness"]

    @cached_property
    def instances(self) -> Collection:
        return self.db["instances"]

    async def transaction(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """Run `work` in a transaction, retried by the driver on transient errors (write conflicts)."""
        async with self.client.start_session() as session:
            return await session.with_transaction(work)

    async def watch(self, pipeline: list[Document], resume_after: str | None, max_await_ms: int = 500) -> Stream:
        """A change stream over the whole database, with exact pre- and post-images of each change.

        `resume_after` is a cursor handed to clients: the `_data` of a resume token.
        """
        return await self.db.watch(
            # Last: an event over 16 MB (a huge document written with the validator bypassed) comes in
            # fragments instead of failing the stream for good; the hub puts them back together.
            [*pipeline, {"$changeStreamSplitLargeEvent": {}}],
            full_document="whenAvailable",
            full_document_before_change="whenAvailable",
            start_after={"_data": resume_after} if resume_after else None,
            max_await_time_ms=max_await_ms,
        )

    async def prepare(self) -> None:
        """Collections with their validators (and pre-images where streamed), then indexes; safe to
        run on every start and from several workers at once. A validator that changed is updated."""
        existing = {info["name"]: info.get("options", {}) async for info in await self.db.list_collections()}
        for name in sorted({*SCHEMAS, *STREAMED}):
            wanted = _options(name)
            if name not in existing:
                try:
                    await self.db.create_collection(name, **wanted)
                    continue
                except (CollectionInvalid, OperationFailure) as error:
                    if isinstance(error, OperationFailure) and error.code != NAMESPACE_EXISTS:
                        raise
                    existing[name] = {}  # another worker created it first: make sure of its options
            if any(existing[name].get(key) != value for key, value in wanted.items()):
                log.info("updating the options of %s (validator, pre-images)", name)
                await self.db.command({"collMod": name, **wanted})
        for name, obsolete in OBSOLETE_INDEXES.items():
            present = {index["name"] async for index in await self.db[name].list_indexes()}
            for index in sorted(present & set(obsolete)):
                log.info("dropping the index %s.%s (replaced)", name, index)
                with contextlib.suppress(OperationFailure):  # another worker dropped it first
                    await self.db[name].drop_index(index)
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            with pymongo.timeout(timeout):
                await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def close(self) -> None:
        """Close the client; bounded, so a connection stuck mid-operation cannot hold a shutdown."""
        await bounded(self.client.close(), 5.0)
