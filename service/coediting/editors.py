"""The process's live documents: their replicas, their writer, their awareness.

Writes to one document are serialized in this process (one transaction at a time per document; the
updates that arrive meanwhile go together in the next one: group commit) and across processes by the
document record every write updates (a write conflict retries the transaction, which first reads the
replica again). Each transaction appends the updates to the log with consecutive `seq`s and writes
the text they make as `body`, so REST, search and the shell read what the editors see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from models.coediting import sync_out
from models.documents import BODY, DocumentPatch

from .. import documents
from ..accounts import User
from ..config import Settings
from ..database import Binary, Database, Document, ObjectId, ReturnDocument, Session, now
from ..documents import revision_of, visible
from ..errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RateLimited,
    ServiceError,
    Unavailable,
    ValidationFailed,
)
from ..metrics import COEDIT_RERUNS
from ..ratelimit import RateLimiter
from ..stored import unreadable
from . import ledger
from .replica import Replica
from .yjs import Awareness, BadUpdate, Update, check, read_awareness, read_update, write_awareness

log = logging.getLogger("murmuration.coediting")

COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_CLIENTS_PER_CONNECTION = 8
MAX_AWARENESS_STATE = 4096
AWARENESS_TTL = 60.0
SETTLE_READS = 3  # reads of a replica a subscription waits for before it gives up (deletions by hand)


@dataclass(eq=False)
class Item:
    """One write waiting for its document's writer."""

    user: User
    update: bytes | None = None
    parsed: Update | None = None
    patch: DocumentPatch | None = None
    if_match: set[str] | None = None
    kept: int = 0
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class Cursors:
    """A connection's latest awareness states on one document (cursor, selection, name, colour)."""

    states: dict[int, Awareness] = field(default_factory=dict)
    writing: bool = False
    dirty: bool = False


class Editors:
    def __init__(self, db: Database, settings: Settings, instance: str) -> None:
        self.db = db
        self.settings = settings
        self.limits = settings.coedit
        self.instance = instance
        self.replicas: OrderedDict[ObjectId, Replica] = OrderedDict()
        # Updates the stream brings while a replica is read from the log: the read may not see them
        # (its cursor went past), and it is not yet a replica they can be folded into. Folded after.
        self.arrivals: dict[ObjectId, list[tuple[Any, Any]]] = {}  # (seq, update) as the stream read them
        self.queues: dict[ObjectId, list[Item]] = {}
        self.writing: set[ObjectId] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.aware: dict[tuple[str, ObjectId], Cursors] = {}
        self.paces = RateLimiter(self.limits.rate * 60, self.limits.rate * 2)

    def opened(self, document: ObjectId) -> None:
        """A `doc` subscription of this process holds the document (it is not evicted meanwhile)."""
        replica = self.replicas.get(document)
        if replica is not None:
            replica.subscribers += 1

    def closed(self, conn: str, document: Any) -> None:
        replica = self.replicas.get(document)
        if replica is not None:
            replica.subscribers -= 1
        self.aware.pop((conn, document), None)

    def gone(self, conn: str) -> None:
        """The connection closed: its pace goes with it."""
        self.paces.forget(conn)

    def pace(self, conn: str) -> None:
        """COEDIT_RATE updates and awareness updates a second per connection (keyed by the connection
        alone: a key per document named would let one socket grow the limiter without bound)."""
        wait = self.paces.hit(conn)
        if wait:
            raise RateLimited(wait, f"at most {self.limits.rate} updates a second; slow down")

    # --- replicas ---------------------------------------------------------------------------

    async def replica(self, document: ObjectId) -> Replica:
        """The document's replica, read from the log when it is not held (or went stale)."""
        replica = self.replicas.get(document)
        if replica is None:
            self._make_room()
            replica = self.replicas[document] = Replica()
            replica.stale = True
        self.replicas.move_to_end(document)
        if replica.stale:
            async with replica.lock:
                await self._read(document, replica)
        return replica

    @contextlib.asynccontextmanager
    async def settled(self, document: ObjectId) -> AsyncIterator[None]:
        """While held, the document's replica is exactly what the log has committed, read in full: no
        write is half-way (one that runs again goes back to a base and reads the log after it; one that
        failed leaves it stale). A `doc` subscription's sync is taken inside, or it could miss updates
        already sent to subscribers, or show one that is never stored."""
        replica = await self.replica(document)
        async with replica.lock:
            for _ in range(SETTLE_READS):
                await self._read(document, replica)
                if not replica.stale:
                    break
            else:  # deletions by hand keep coming: no text can be vouched for now
                raise Unavailable("the document's log is being changed; subscribe again in a moment")
            yield

    async def _read(self, document: ObjectId, replica: Replica) -> None:
        """Read the replica again if it went stale (the caller holds its lock), with the updates the
        stream brought meanwhile."""
        if not replica.stale:
            return
        arrivals = self.arrivals[document] = []
        try:
            body = await ledger.load(self.db, document, replica)
        except BaseException:
            replica.stale = True
            raise
        finally:
            del self.arrivals[document]
        for seq, update in arrivals:
            with contextlib.suppress(ValueError):  # one the engine cannot read left it stale: read again
                self._follow(replica, seq, update)
        if body is not None and body != replica.body():
            # The log and the body disagree (an entry garbled or deleted by hand, a body set in the
            # shell): the body is the text people read, so it is folded in as an edit.
            self.later(self.reconcile(document))

    def _make_room(self) -> None:
        if len(self.replicas) < self.limits.documents:
            return
        for document, replica in self.replicas.items():  # least recently used first
            if replica.subscribers <= 0 and not replica.lock.locked() and document not in self.writing:
                del self.replicas[document]
                return
        raise Unavailable(f"this instance holds {self.limits.documents} live documents; try again later")

    def observe(self, change: Any) -> None:
        """Fold what the change stream says: updates from any instance, deleted documents, a body
        edited by hand. None: the stream broke; every replica is read again when next used."""
        if change is None:
            for replica in self.replicas.values():
                replica.stale = True
            return
        if change.coll == "documents":
            self._document_changed(change)
            return
        if change.op == "drop" or (change.op == "delete" and not change.transaction):
            # Not a compaction (which deletes in a transaction): entries deleted by hand. A replica
            # holding them would go on accepting updates that build on them, which no instance reading
            # the log could apply: every replica is read again from what the log has.
            if not all(replica.stale for replica in self.replicas.values()):  # said once per deletion
                log.warning("doc_updates entries were deleted outside compaction: live documents are read again")
            for replica in self.replicas.values():
                replica.stale = True
            return
        record = change.after
        if change.op != "insert" or not isinstance(record, dict):
            return
        document, seq = record.get("document"), record.get("seq")
        arrivals = self.arrivals.get(document)  # type: ignore[arg-type]
        if arrivals is not None:
            arrivals.append((seq, record.get("update")))
            return
        found = self.replicas.get(document)  # type: ignore[arg-type]
        if found is not None and not found.stale:
            self._follow(found, seq, record.get("update"))

    @staticmethod
    def _follow(replica: Replica, stored: Any, update: Any) -> None:
        """Fold the update logged as `stored` into the replica, if it is the next one; one past it means
        a gap, and the replica is read again. The seq is read as the log's readers read it (a double the
        shell wrote is its integer; `true` is no seq)."""
        seq = ledger.number(stored)
        if seq <= replica.seq:
            return
        if seq != replica.seq + 1:
            replica.stale = True  # a gap: read again rather than fold out of order
            return
        try:
            if not isinstance(update, bytes):
                raise ValueError("update is not binary")
            replica.apply(update)
        except ValueError:
            replica.stale = True
            raise
        replica.seq = seq
        replica.genesis = None

    def _document_changed(self, change: Any) -> None:
        replica = self.replicas.get(change.id)
        if replica is None:
            return
        if change.op in ("delete", "drop"):
            replica.stale = True
            return
        doc = change.after or {}
        body = doc.get("body")
        seq = ledger.seq_of(doc)
        settled = not replica.stale and seq == replica.seq and change.id not in self.writing
        if settled and isinstance(body, str) and body != replica.body():
            self.later(self.reconcile(change.id))  # the body was set by hand (the shell): folded in as an edit

    def later(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, ServiceError):
            log.error("a co-editing write failed: %s: %s", type(error).__name__, error)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- what a subscriber sees first ---------------------------------------------------------

    def opening(self, document: Any, vector: bytes | None, role: str) -> dict[str, Any]:
        replica = self.replicas[document]
        return sync_out(replica.missing(vector), replica.vector(), replica.seq, role)

    # --- writes -------------------------------------------------------------------------------

    async def update(self, user: User, document: ObjectId, update: bytes) -> int | None:
        """Store a client's update; its seq (None: it held nothing new)."""
        try:
            parsed = read_update(update)
        except BadUpdate as error:
            raise BadRequest(f"not a text update of this document: {error}") from None
        if parsed.is_empty():
            return None
        result: int | None = await self._submit(document, Item(user, update=update, parsed=parsed))
        return result

    async def patch(
        self, user: User, document_id: str, patch: DocumentPatch, if_match: set[str] | None, kept: int
    ) -> Document:
        """A REST edit (a save point): a new body is merged as edits, with what was typed meanwhile."""
        if not patch.model_dump(exclude_unset=True):
            raise ValidationFailed("send at least one of title, body, abstract, tags")
        document = await self._editable(user, document_id)
        item = Item(user, patch=patch, if_match=if_match, kept=kept)
        result: Document = await self._submit(document, item)
        return result

    async def _editable(self, user: User, document_id: str) -> ObjectId:
        """The document's id if `user` may edit it (reading their role only, not the roster)."""
        document, role = await documents.role(self.db, user, document_id)
        if role not in documents.EDITORS:
            raise Forbidden("viewers cannot edit this document")
        return document

    async def reconcile(self, document: ObjectId) -> None:
        await self._submit(document, None)

    async def _submit(self, document: ObjectId, item: Item | None) -> Any:
        replica = await self.replica(document)
        queue = self.queues.setdefault(document, [])
        if item is not None:
            queue.append(item)
        if document not in self.writing:
            self.writing.add(document)
            self.later(self._drain(document, replica, item is None))
        return None if item is None else await item.done

    async def _drain(self, document: ObjectId, replica: Replica, reconcile: bool) -> None:
        try:
            while True:
                queue = self.queues.get(document) or []
                if not queue and not reconcile:
                    return
                # A REST edit goes alone: it has its own If-Match and makes a save point.
                if queue and queue[0].patch is not None:
                    batch = [queue.pop(0)]
                else:
                    cut = next((i for i, item in enumerate(queue) if item.patch is not None), len(queue))
                    batch, queue[:cut] = queue[:cut], []
                reconcile = False
                started = time.monotonic()
                size = await self._commit(document, replica, batch)
                # The body goes to the oplog with every write: a large text is written less often.
                pause = size / self.limits.body_rate - (time.monotonic() - started)
                if pause > 0 and self.queues.get(document):
                    await asyncio.sleep(pause)
        finally:
            self.writing.discard(document)
            if not self.queues.get(document):
                self.queues.pop(document, None)

    async def _commit(self, document: ObjectId, replica: Replica, batch: list[Item]) -> int:
        """One transaction for `batch`; each item's future gets its outcome. The body's size."""
        write = Write(self, document, replica, batch)
        try:
            async with replica.lock:
                await self.db.transaction(write.run)
        except Exception as error:
            replica.stale = True  # what was applied for nothing stays in it: read it again
            if not batch:
                raise  # a reconcile: logged by the task that ran it
            for item in batch:
                item.done.set_exception(error)
            return 0
        replica.seq = max(replica.seq, write.seq)
        replica.genesis = None
        for item in batch:
            outcome = write.outcomes.get(item)
            if isinstance(outcome, BaseException):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)
        return write.size

    async def save(self, user: User, document: ObjectId) -> int:
        """A save point now, if there were updates since the last: the version it leaves."""
        return await save_point(self.db, await self._editable(user, str(document)))

    # --- awareness ----------------------------------------------------------------------------

    async def awareness(self, conn: str, user: User, document: ObjectId, raw: bytes) -> None:
        try:
            entries = read_awareness(raw, MAX_AWARENESS_STATE)
        except BadUpdate as error:
            raise BadRequest(f"not an awareness update: {error}") from None
        mine = self.aware.setdefault((conn, document), Cursors())
        for entry in entries:
            if entry.client not in mine.states:
                await self._claim(conn, user, document, entry, len(mine.states))
            mine.states[entry.client] = Awareness(entry.client, entry.clock, _signed(entry.state, user))
        mine.dirty = True
        if not mine.writing:
            mine.writing = True
            try:
                while mine.dirty:  # what came during a write goes in the next: the latest states win
                    mine.dirty = False
                    await self._write_awareness(conn, user, document, mine)
            finally:
                mine.writing = False

    async def _claim(self, conn: str, user: User, document: ObjectId, entry: Awareness, held: int) -> None:
        """A connection speaks for the client ids it declares first, and for no id another person's
        connection holds on the document (the same person's may: a tab that reconnects keeps its id)."""
        if held >= MAX_CLIENTS_PER_CONNECTION:
            raise BadRequest(f"at most {MAX_CLIENTS_PER_CONNECTION} awareness clients per connection")
        if entry.state is None:
            raise BadRequest(f"client {entry.client} is not one of this connection's")
        holding = {"document": document, f"clients.{entry.client}": {"$exists": True}, "user": {"$ne": user.id}}
        typed = {"document": document, "clients": entry.client, "author": {"$nin": [user.id, None]}}
        # Held now by another person's connection, or the id their typing carries in the log (so it stays
        # theirs while they are away: a reconnecting tab keeps its id).
        if (
            await self.db.awareness.find_one(holding, {"_id": 1}) is not None
            or await self.db.doc_updates.find_one(typed, {"_id": 1}) is not None
        ):
            raise Forbidden(f"client {entry.client} is someone else's on this document")

    async def _write_awareness(self, conn: str, user: User, document: ObjectId, mine: Cursors) -> None:
        states = list(mine.states.values())
        record = {
            "document": document,
            "conn": conn,
            "instance": self.instance,
            "user": user.id,
            "clients": {str(entry.client): entry.clock for entry in states},
            "update": Binary(write_awareness(states)),
            "expires_at": now() + timedelta(seconds=AWARENESS_TTL),
        }
        await self.db.awareness.replace_one({"_id": f"{conn}:{document}"}, record, upsert=True)

    async def leave(self, conn: str, document: Any) -> None:
        """The connection left the document: its awareness goes (the others see its clients removed)."""
        self.aware.pop((conn, document), None)
        await self.db.awareness.delete_one({"_id": f"{conn}:{document}"})


def _signed(state: dict[str, Any] | None, user: User) -> dict[str, Any] | None:
    """The state with the account's own name (nobody types under another's)."""
    if state is None:
        return None
    shown = state.get("user")
    shown = shown if isinstance(shown, dict) else {}
    colour = shown.get("color")
    colour = colour if isinstance(colour, str) and COLOUR.match(colour) else "#" + str(user.id)[-6:]
    light = shown.get("colorLight")
    light = light if isinstance(light, str) and COLOUR.match(light) else colour
    return {**state, "user": {"name": user.name, "color": colour, "colorLight": light, "id": str(user.id)}}


class TooLong(ValidationFailed):
    """A text over the limit, found once an edit was applied to the replica."""


# What a write reads of the document: everything but the roster and the readers.
UNUSED = {"collaborators": 0, "access": 0}


class Write:
    """One transaction of a document's writer: it may run several times (write conflicts), so each
    run starts from the log as this transaction sees it."""

    def __init__(self, editors: Editors, document: ObjectId, replica: Replica, batch: list[Item]) -> None:
        self.editors, self.db, self.limits = editors, editors.db, editors.limits
        self.document, self.replica, self.batch = document, replica, batch
        self.runs = 0
        self.outcomes: dict[Item, Any] = {}
        self.patch: Item | None = None  # the REST edit of this write, if it is one
        self.seq = 0
        self.size = 0
        self.began = False  # this write starts the document's log with its first text

    async def run(self, session: Session) -> None:
        self.runs += 1
        self.outcomes = {}
        replica = self.replica
        doc = await self._current(session)
        seq = max(ledger.seq_of(doc), replica.seq)
        records: list[ledger.Record] = []
        # The log starts (or starts again, lost by hand) with the text the replica began from the body.
        self.began = replica.genesis is not None and replica.seq == 0
        if self.began:
            assert replica.genesis is not None
            records.append(ledger.record(replica.genesis, None))
        body = doc.get("body")
        # A body removed (or made a non-string) by hand says nothing about the text: it is not an edit.
        if isinstance(body, str) and replica.body() != body:  # set by hand, or by an older version: folded in
            fixed = replica.edit(body)
            if fixed is not None:
                records.append(ledger.record(fixed, None))
        changes: dict[str, Any] = {}
        author: User | None = None
        for item in self.batch:
            try:
                if item.patch is not None:
                    changes = await self._patch(item, doc, records, session)
                else:
                    self.outcomes[item] = self._update(item, records, seq)
                author = item.user
            except TooLong:
                raise  # applied already: the whole write is given up, the replica read again
            except ServiceError as error:
                self.outcomes[item] = error
        if not records and self.patch is None:  # nothing new typed: nothing to write
            self.seq = seq
            return
        await self._store(doc, seq, records, changes, author, session)

    async def _current(self, session: Session) -> Document:
        """The document, with the replica made exactly its log (nothing of this write in it yet): read
        again if stale; on a rerun, back to its base and the log after it (or the whole log)."""
        replica, how = self.replica, ""
        if replica.stale:
            await ledger.load(self.db, self.document, replica, session)
        elif self.runs > 1:  # what the last run applied is not in the log
            rewound = await self._rewind(session)
            how = "rewound" if rewound else "reloaded"
            if not rewound:
                await ledger.load(self.db, self.document, replica, session)
        # Not the roster nor the readers (thousands, with every keystroke): nothing here needs them.
        doc = await self.db.documents.find_one({"_id": self.document}, UNUSED, session=session)
        if doc is None:
            raise NotFound("document not found")
        seq = ledger.seq_of(doc)
        if seq > replica.seq:
            whole = await ledger.fold(self.db, self.document, replica, session)
            if how == "rewound" and (not whole or seq > replica.seq):  # compacted past the base
                how = "reloaded"
                await ledger.load(self.db, self.document, replica, session)
        if how:
            COEDIT_RERUNS.labels(how).inc()
        replica.mark()
        return doc

    async def _rewind(self, session: Session) -> bool:
        """Back to the replica's base and the log after it; False if there is no base, or the log
        lacks an entry the base holds (deleted by hand since: the base would go on vouching for it)."""
        base, replica = self.replica.base, self.replica
        if base is None:
            return False
        cut = await ledger.compacted(self.db, self.document, session)
        if not await ledger.intact(self.db, self.document, cut, base[1], session):
            return False
        replica.rewind(base)
        return await ledger.fold(self.db, self.document, replica, session)

    def _update(self, item: Item, records: list[ledger.Record], seq: int) -> int | None:
        assert item.parsed is not None and item.update is not None
        known = self.replica.known()
        try:
            check(item.parsed, known)
        except BadUpdate as error:
            raise BadRequest(str(error)) from None
        if not item.parsed.news(known):
            return None
        if len(self.replica.body()) + item.parsed.inserted > BODY:
            raise ValidationFailed(f"the text would be over {BODY} characters")
        length = self.replica.length()
        self.replica.apply(item.update)
        if not item.parsed.inserts(known) and self.replica.length() == length:
            return None  # deletions of text deleted already: nothing to store (the log is not padded)
        records.append(ledger.record(item.update, item.user.id, item.parsed))
        return seq + len(records)

    async def _patch(self, item: Item, doc: Document, records: list[ledger.Record], session: Session) -> dict[str, Any]:
        assert item.patch is not None
        current = await visible(self.db, item.user, str(self.document), session)
        if not documents.can_edit(current, item.user.id):
            raise Forbidden("viewers cannot edit this document")
        base = self._base(doc, item.if_match)
        changes = item.patch.model_dump(exclude_unset=True)
        if not changes:
            raise ValidationFailed("send at least one of title, body, abstract, tags")
        new_body = changes.pop("body", None)
        if isinstance(new_body, str):
            update = await self._merge(base, new_body, session)
            if update is not None:
                records.append(ledger.record(update, item.user.id))
        self.patch = item  # its outcome is the document, once stored
        return changes

    def _base(self, doc: Document, if_match: set[str] | None) -> int | None:
        """The seq of the text the REST client started from (None: the current text)."""
        if if_match is None:
            return None
        live = ledger.live_of(doc)
        version = doc.get("version")
        bases = []
        for tag in if_match:
            named, _, seq = tag.partition(".")
            if named.isdigit() and int(named) == version:
                bases.append(int(seq) if seq.isdigit() else ledger.number(live.get("saved")))
        if not bases:
            raise PreconditionFailed(
                f"the document is at version {version}; reload it and apply your change again",
                details=[{"field": "If-Match", "message": f"current ETag is {etag(doc)}"}],
            )
        return max(bases)

    async def _merge(self, base: int | None, new_body: str, session: Session) -> bytes | None:
        """The update that makes the text the client started from into the one it sent, on the
        document's CRDT: what others typed meanwhile stays."""
        replica = self.replica
        if base is None or base >= replica.seq:
            return replica.edit(new_body)
        if base < 1:  # the log starts with the first text, seq 1: nothing older can be a base
            raise PreconditionFailed("no text was ever at that ETag; read the document again")
        branch = Replica()
        snapshot = await self.db.doc_snapshots.find_one({"_id": self.document}, {"seq": 1}, session=session)
        if snapshot is not None and ledger.number(snapshot.get("seq")) > base:
            raise PreconditionFailed("the text you edited is older than the kept history; read it again")
        try:
            await ledger.load(self.db, self.document, branch, session, until=base)
        except ValueError:  # a log entry or snapshot garbled by hand
            raise PreconditionFailed("the text you edited cannot be rebuilt; read the document again") from None
        update = branch.edit(new_body)
        if update is not None:
            replica.apply(update)
            if len(replica.body()) > BODY:  # what was typed meanwhile and what was sent, together
                raise TooLong(f"merged with what was typed meanwhile, the text would be over {BODY} characters")
        return update

    async def _store(
        self,
        doc: Document,
        seq: int,
        records: list[ledger.Record],
        changes: dict[str, Any],
        author: User | None,
        session: Session,
    ) -> None:
        stamp = now()
        live = ledger.live_of(doc)
        new_seq = seq + len(records)
        body = self.replica.body()
        self.size = len(body)
        if records:
            await self.db.doc_updates.insert_many(
                ledger.entries(self.document, seq + 1, records, stamp), session=session
            )
        patch = self.patch
        clean = ledger.number(live.get("saved")) >= seq
        if clean or patch is not None:  # the text of this version stops being current: kept as its revision
            try:
                revision = revision_of(doc)
            except (KeyError, TypeError):
                raise unreadable("documents", doc) from None
            await self.db.revisions.update_one(
                {"document": self.document, "version": doc["version"]},
                {"$setOnInsert": revision},
                upsert=True,
                session=session,
            )
        # Set whole: a `live` written by hand as something else than an object is replaced, not a 409.
        live = {**live, "seq": new_seq, "at": stamp}
        if self.began:
            live["saved"] = 1  # the first text is the current version's: its save point
        if patch is not None:
            live["saved"] = new_seq
            live.pop("save_after", None)
        elif records:
            live["save_after"] = stamp + timedelta(seconds=self.limits.save_after)
            if new_seq - ledger.number(live.get("snapshot")) >= self.limits.compact_after:
                live["compact"] = True
        update: dict[str, Any] = {"$set": {"body": body, "live": live, "updated_at": stamp, **changes}}
        if author is not None:
            update["$set"]["updated_by"] = author.ref()
        if patch is not None:
            update["$inc"] = {"version": 1}
        stored = await self.db.documents.find_one_and_update(
            {"_id": self.document, "version": doc.get("version")},
            update,
            None if patch is not None else {"_id": 1},  # a REST edit answers the document; a keystroke nothing
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if stored is None:
            raise PreconditionFailed("the document changed while this edit was applied; retry")
        if patch is not None:
            if patch.kept:
                await self.db.revisions.delete_many(
                    {"document": self.document, "version": {"$lt": doc["version"] - patch.kept + 1}}, session=session
                )
            self.outcomes[patch] = stored
        self.seq = new_seq


def etag(doc: Document) -> str:
    """`"<version>"` at a save point, `"<version>.<seq>"` with updates since."""
    live = ledger.live_of(doc)
    seq, saved = ledger.number(live.get("seq")), ledger.number(live.get("saved"))
    version = doc.get("version")
    if isinstance(version, float) and version.is_integer():  # the shell writes 1 as 1.0; it is shown as 1
        version = int(version)
    return f'"{version}.{seq}"' if seq > saved else f'"{version}"'


async def save_point(db: Database, document: ObjectId) -> int:
    """Version + 1 if there were updates since the last save point (the text of the version it ends is
    in `revisions` already: kept by the first update after it). The version it leaves."""
    for _ in range(5):
        doc = await db.documents.find_one({"_id": document}, {"version": 1, "live": 1})
        if doc is None:
            raise NotFound("document not found")
        live = ledger.live_of(doc)
        seq = ledger.number(live.get("seq"))
        version = doc.get("version")
        if not isinstance(version, int | float) or isinstance(version, bool):
            raise unreadable("documents", doc)  # no version to go on from (written by hand)
        if seq <= ledger.number(live.get("saved")):
            return int(version)
        saved = await db.documents.find_one_and_update(
            {"_id": document, "live.seq": seq, "version": version},
            {"$inc": {"version": 1}, "$set": {"live.saved": seq}, "$unset": {"live.save_after": ""}},
            {"version": 1},
            return_document=ReturnDocument.AFTER,
        )
        if saved is not None:
            return int(saved["version"])
    raise Unavailable("the document keeps changing; try the save again")
