"""A document's CRDT log in MongoDB: `doc_updates` (document, seq, update, author, at) after the
`doc_snapshots` entry (document, seq, state) that compaction folds old updates into.

The document itself carries `live: {seq, saved, at, save_after}`: the last update folded into its
`body`, the update of its last save point, when the last one came, and when the next save point is
due. Everything read here may have been written by hand: a record the engine cannot read is skipped
and reported, never a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from ..database import Binary, Database, ObjectId, Session
from ..stored import malformed
from .replica import Replica

log = logging.getLogger("murmuration.coediting")


def live_of(doc: dict[str, Any] | None) -> dict[str, Any]:
    live = doc.get("live") if doc else None
    return live if isinstance(live, dict) else {}


def number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def seq_of(doc: dict[str, Any] | None) -> int:
    return number(live_of(doc).get("seq"))


async def load(db: Database, document: ObjectId, replica: Replica, session: Session | None = None) -> None:
    """Read the document's CRDT into `replica` (emptied first): the snapshot, then every update after
    it; a document without a log starts from its `body`."""
    replica.reset()
    snapshot = await db.doc_snapshots.find_one({"_id": document}, session=session)
    start = 0
    if snapshot is not None and _fold(replica, "doc_snapshots", snapshot, "state"):
        start = number(snapshot.get("seq"))
    replica.seq = start
    await fold(db, document, replica, session)
    if replica.seq == 0:
        doc = await db.documents.find_one({"_id": document}, {"body": 1}, session=session)
        body = doc.get("body") if doc else None
        replica.begin(body if isinstance(body, str) else "")


async def fold(db: Database, document: ObjectId, replica: Replica, session: Session | None = None) -> None:
    """Fold the updates logged after `replica.seq`, in order."""
    query = {"document": document, "seq": {"$gt": replica.seq}}
    async for record in db.doc_updates.find(query, session=session).sort("seq", 1):
        seq = number(record.get("seq"))
        if seq > replica.seq + 1 and replica.seq:
            log.warning("the log of document %s jumps from %d to %d (edited by hand?)", document, replica.seq, seq)
        _fold(replica, "doc_updates", record, "update")
        replica.seq = max(replica.seq, seq)


def _fold(replica: Replica, collection: str, record: dict[str, Any], field: str) -> bool:
    data = record.get(field)
    try:
        if not isinstance(data, bytes):
            raise ValueError(f"{field} is not binary")
        replica.apply(data)
    except ValueError as error:
        malformed(collection, record, error)
        return False
    return True


def entries(document: ObjectId, first: int, updates: list[tuple[bytes, ObjectId | None]], at: Any) -> list[Any]:
    return [
        {"document": document, "seq": first + index, "update": Binary(update), "author": author, "at": at}
        for index, (update, author) in enumerate(updates)
    ]
