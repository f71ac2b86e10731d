"""A document's CRDT log in MongoDB: `doc_updates` (document, seq, update, author, at) after the
`doc_snapshots` entry (document, seq, state) that compaction folds old updates into. That entry also
holds the head (head_seq, head): the state at a recent update, so that reading a document live takes
the updates after it only, not the whole COEDIT_KEEP window.

The document itself carries `live: {seq, saved, at, save_after}`: the last update folded into its
`body`, the update of its last save point, when the last one came, and when the next save point is
due. Everything read here may have been written by hand: a record the engine cannot read is skipped
and reported, never a crash.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from ..database import Binary, Database, ObjectId, Session
from ..stored import malformed
from .replica import Replica
from .yjs import Update, read_update

log = logging.getLogger("murmuration.coediting")


def live_of(doc: dict[str, Any] | None) -> dict[str, Any]:
    live = doc.get("live") if doc else None
    return live if isinstance(live, dict) else {}


def number(value: Any) -> int:
    """A seq as stored: a non-negative integer; the shell writes numbers as doubles (`5` is `5.0`)."""
    if isinstance(value, float) and value.is_integer() and 0 <= value < 2**53:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def seq_of(doc: dict[str, Any] | None) -> int:
    return number(live_of(doc).get("seq"))


async def load(
    db: Database, document: ObjectId, replica: Replica, session: Session | None = None, until: int | None = None
) -> str | None:
    """Read the document's CRDT into `replica` (emptied first): the snapshot, then the updates after it
    (up to `until`); a document without a log starts from its `body`. The stored body (None if there is
    none), for the caller to compare with the text.

    Live (`until` None), an entry the engine cannot read is skipped and reported: the text is then
    made whole again from `body` by the next write. For a past text (`until`), it is a ValueError: a
    base with a hole in it would turn its missing text into an insertion."""
    replica.reset()
    strict = until is not None
    doc = await db.documents.find_one({"_id": document}, {"body": 1, "live.seq": 1}, session=session)
    snapshot = await db.doc_snapshots.find_one({"_id": document}, session=session)
    if snapshot is not None:
        _start(replica, snapshot, seq_of(doc) if until is None else min(until, seq_of(doc)), strict)
    await fold(db, document, replica, session, until)
    body = doc.get("body") if doc else None
    body = body if isinstance(body, str) else None
    if replica.seq == 0 and not strict:
        replica.begin(document, body or "")
    if strict:
        replica.seq = until or 0
    return body


async def fold(
    db: Database, document: ObjectId, replica: Replica, session: Session | None = None, until: int | None = None
) -> bool:
    """Fold the updates logged after `replica.seq` (up to `until`), in order; False if the log jumped
    over some (compacted since, or deleted by hand)."""
    seqs: dict[str, int] = {"$gt": replica.seq} if until is None else {"$gt": replica.seq, "$lte": until}
    whole = True
    async for record in db.doc_updates.find({"document": document, "seq": seqs}, session=session).sort("seq", 1):
        seq = number(record.get("seq"))
        if seq > replica.seq + 1:
            whole = False
            if replica.seq:  # (a log compacted under an unreadable snapshot starts past 1: said then)
                log.warning("the log of document %s jumps from %d to %d", document, replica.seq, seq)
        _fold(replica, "doc_updates", record, "update", until is not None)
        replica.seq = max(replica.seq, seq)
    return whole


def _start(replica: Replica, snapshot: dict[str, Any], until: int, strict: bool = False) -> None:
    """Start from the newest state kept that is not past `until` (nor past the document's last update:
    a seq written by hand or restored from another backup than the log's is not believed): the head (a
    recent checkpoint, so a load reads about COEDIT_COMPACT_AFTER entries, not the whole COEDIT_KEEP
    window) or the snapshot (where the log begins). A head that cannot be read is passed over; with
    `strict` (a past text), a snapshot that cannot be read is a ValueError."""
    kept = [(number(snapshot.get(at)), field) for at, field in (("head_seq", "head"), ("seq", "state"))]
    for seq, field in sorted((entry for entry in kept if entry[1] in snapshot), reverse=True):
        if seq > until:
            continue
        if _fold(replica, "doc_snapshots", snapshot, field, strict and field == "state"):
            replica.seq = seq
            return
        replica.reset()


async def intact(db: Database, document: ObjectId, after: int, upto: int, session: Session | None = None) -> bool:
    """Every entry after `after` up to `upto` is in the log (none deleted by hand): counted on the index,
    nothing read."""
    if upto <= after:
        return True
    found = await db.doc_updates.count_documents(
        {"document": document, "seq": {"$gt": after, "$lte": upto}}, session=session
    )
    return bool(found == upto - after)


async def compacted(db: Database, document: ObjectId, session: Session | None = None) -> int:
    """The seq compaction has folded the log up to (the entries up to it are gone on purpose)."""
    snapshot = await db.doc_snapshots.find_one({"_id": document}, {"seq": 1}, session=session)
    return number((snapshot or {}).get("seq"))


async def checkpoint(db: Database, document: ObjectId, every: int) -> int | None:
    """Keep the document's state at its latest update as the head of its snapshot, if the head is
    `every` updates old: the new head's seq (None: not due, or the log has a hole). Looked at first
    without a transaction (most rounds find nothing due); read and written in one, so a compaction at
    the same time cannot take entries from under it."""
    if await _due(db, document, every) is None:
        return None

    async def work(session: Session) -> int | None:
        latest = await _due(db, document, every, session)
        if latest is None:
            return None
        replica = Replica()
        snapshot = await db.doc_snapshots.find_one({"_id": document}, session=session)
        if snapshot is not None:
            _start(replica, snapshot, latest, strict=True)
        if not await intact(db, document, replica.seq, latest, session):
            return None  # a hole in the log (deleted by hand): no state to vouch for
        await fold(db, document, replica, session, latest)
        head = {"head_seq": latest, "head": Binary(replica.missing(None))}
        await db.doc_snapshots.update_one({"_id": document}, {"$set": head}, upsert=True, session=session)
        return latest

    found: int | None = await db.transaction(work)
    return found


async def _due(db: Database, document: ObjectId, every: int, session: Session | None = None) -> int | None:
    """The document's last update if the newest state kept (that is believed) is `every` behind it."""
    doc = await db.documents.find_one({"_id": document}, {"live.seq": 1}, session=session)
    latest = seq_of(doc)
    kept = await db.doc_snapshots.find_one({"_id": document}, {"seq": 1, "head_seq": 1}, session=session)
    newest = max((seq for seq in (number((kept or {}).get(at)) for at in ("seq", "head_seq")) if seq <= latest),
                 default=0)  # fmt: skip
    return latest if latest - newest >= every else None


def _fold(replica: Replica, collection: str, record: dict[str, Any], field: str, strict: bool) -> bool:
    data = record.get(field)
    try:
        if not isinstance(data, bytes):
            raise ValueError(f"{field} is not binary")
        replica.apply(data)
    except ValueError as error:
        malformed(collection, record, error)
        if strict:
            raise
        return False
    return True


class Record(NamedTuple):
    """An update to log: its bytes, its author (None: the service's own edit), the Yjs client ids in it
    (whose they are: an awareness client id is its typist's)."""

    update: bytes
    author: ObjectId | None
    clients: list[int]


def record(update: bytes, author: ObjectId | None, parsed: Update | None = None) -> Record:
    """`parsed`: the update as already read (a client's is read once, when it arrives)."""
    return Record(update, author, sorted((parsed if parsed is not None else read_update(update)).ranges))


def entries(document: ObjectId, first: int, records: list[Record], at: Any) -> list[Any]:
    """The log entries of `records`, numbered from `first`."""
    return [
        {
            "document": document,
            "seq": first + index,
            "update": Binary(entry.update),
            "author": entry.author,
            "clients": entry.clients,
            "at": at,
        }
        for index, entry in enumerate(records)
    ]
