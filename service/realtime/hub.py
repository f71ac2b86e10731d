"""The hub: one change stream per worker process, fanned out to this process's subscriptions.

node (a worker) -> broker (MongoDB's change stream: every committed write, whoever made it)
-> hub (this: folds each change into the board, asks the router where it goes, delivers it, and
tells the observers of its collection) -> the subscriptions' sessions.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..coediting.editors import Editors
from ..config import Settings
from ..database import Database, DatabaseError, ObjectId, OperationFailure, bounded, history_lost, now
from ..database import Stream as ChangeStream
from ..errors import BadRequest, CursorExpired, RateLimited
from ..metrics import EVENTS, REPLAY_READS, REPLAYS, SKIPPED_CHANGES, STREAM_LAG
from ..ratelimit import RateLimiter
from ..stored import malformed
from .board import Board
from .change import OPERATIONS, STRUCTURAL, Change, Fragments
from .deadlines import Deadlines
from .frames import error_frame, subscribed
from .keepalive import Keepalive
from .router import Router, Subscription, event_tail, state
from .streams import STREAMS, Audience, Stream

log = logging.getLogger("murmuration.hub")

CURSOR = re.compile(r"^[0-9A-Fa-f]{16,512}$")
MAX_REPLAYS = 3  # per user and process: a replay reads the oplog, which every other user shares

# Hears every change of one collection; None means the stream broke, so changes may have been
# missed until it follows again (a cache fed by it must not be trusted meanwhile).
Observer = Callable[[Change | None], None]


def _position(stream: ChangeStream) -> str | None:
    token = stream.resume_token
    return str(token["_data"]) if token else None


def _readers(doc: dict[str, Any] | None) -> set[ObjectId]:
    """A stored document's `access`, as far as it holds user ids (hand-made data may hold anything)."""
    access = doc.get("access") if doc else None
    return {item for item in access if isinstance(item, ObjectId)} if isinstance(access, list) else set()


PRE_IMAGE_UNUSED = {"fullDocumentBeforeChange.body": 0, "fullDocumentBeforeChange.collaborators": 0}


class Hub:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.router = Router(on_error=self._skipped)
        self.board = Board()
        self.position = ""  # the last resume token this hub has routed up to
        self.following = False
        self.subscriptions: set[Subscription] = set()
        self.observers: dict[str, list[Observer]] = {}
        # What a new subscription of a stream is shown first, for streams whose state is not the
        # board's (a `doc` subscription's sync): set before the first subscription.
        self.openers: dict[str, Callable[[Subscription], list[Audience]]] = {}
        self.editors = Editors(db, settings, "")  # replaced by attach() in a running service
        self.stream: ChangeStream | None = None
        self.replaying: Counter[Any] = Counter()  # user id -> replays under way in this process
        # Asks for a write somewhere in the database (the roster's heartbeat): see `_replay`.
        self.nudge: Callable[[], None] = lambda: None
        self.fragments = Fragments()
        self.stopping = False
        # The process's sockets, each without a timer of its own: pinged from one, and the expiry of
        # their login sessions on another.
        self.keepalive = Keepalive()
        self.expiries = Deadlines()
        # Each socket's frame rate, keyed by its connection id (a limiter of its own was 0.3 KB more).
        self.frames = RateLimiter(settings.ws_frame_rate * 60, settings.ws_frame_rate * 2)

    def attach(self, editors: Editors) -> None:
        """Live co-editing: the replicas follow the stream; a `doc` subscription opens with a sync."""
        self.editors = editors
        self.observe("doc_updates", editors.observe)
        self.observe("documents", editors.observe)

        def opening(sub: Subscription) -> list[Audience]:
            vector, role = sub.params
            return [Audience("sync", sub.target, editors.opening(sub.target, vector, role), {sub.user})]

        self.openers["doc"] = opening

    def observe(self, collection: str, observer: Observer) -> None:
        """Call `observer` with every change of `collection` (and None when the stream breaks).
        Observers are registered before `open`, which decides what the stream watches."""
        self.observers.setdefault(collection, []).append(observer)

    def is_following(self) -> bool:
        return self.following

    @property
    def pipeline(self) -> list[dict[str, Any]]:
        watched = sorted({*self.router.collections, *self.observers})
        documents = {"operationType": {"$in": list(OPERATIONS)}, "ns.coll": {"$in": watched}}
        collections = {"operationType": {"$in": list(STRUCTURAL)}}
        # What a pre-image is read for (who could read it, an order's status, a presence's document) is
        # never a document's body or roster: a document shared with thousands would otherwise bring
        # both, twice, with every save.
        return [{"$match": {"$or": [documents, collections]}}, {"$project": PRE_IMAGE_UNUSED}]

    # --- the change stream ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the stream, then read the board's state: nothing falls between (folding a change
        the state already holds is harmless, the board works by ids)."""
        self.stream = await self.db.watch(self.pipeline, None)
        self.position = _position(self.stream) or ""
        await self._load_board()
        self.following = True

    async def _load_board(self) -> None:
        board = Board()
        connections = await self.db.connections.find().to_list()
        presence = await self.db.presence.find().to_list()
        documents = {doc.get("document") for doc in presence if isinstance(doc.get("document"), ObjectId)}
        access = {
            doc["_id"]: _readers(doc)
            async for doc in self.db.documents.find({"_id": {"$in": list(documents)}}, {"access": 1})
        }
        for collection, record in board.load(connections, presence, access):
            malformed(collection, {"_id": record}, ValueError("a record the board cannot read"))
        self.board = board

    async def close(self) -> None:
        self.following = False
        self.keepalive.stop()
        self.expiries.stop()
        await self._drop_stream()

    async def _drop_stream(self) -> None:
        stream, self.stream = self.stream, None
        self.fragments = Fragments()  # a split event half read is read again, whole, from the position
        if stream is not None:
            await bounded(stream.close(), 2.0)  # a cursor cancelled mid-getMore may never close

    async def follow(self) -> None:
        """Route the stream until cancelled, reopening it from the last position with backoff.
        However it ends (cancelled, or failed: the supervisor restarts it), it stops following first,
        so nothing trusts what it would have said."""
        try:
            await self._follow()
        finally:
            self._lost()
            await self._drop_stream()

    def wind_down(self) -> None:
        """Stop following after the current read (at most the stream's 0.5 s wait): cancelling a read
        in flight can leave PyMongo waiting for good."""
        self.stopping = True

    async def _follow(self) -> None:
        backoff = 0.1
        while not self.stopping:
            try:
                if self.stream is None:
                    self.stream = await self.db.watch(self.pipeline, self.position or None)
                    log.info("change stream resumed")
                while self.stream.alive and not self.stopping:  # an invalidate ends it: reopen after it
                    event = await self.stream.try_next()
                    self.following = True
                    backoff = 0.1
                    if event is not None:
                        event = self.fragments.add(event)
                        if event is None:
                            continue  # more of a split event to come
                    if event is None:
                        self.position = _position(self.stream) or self.position
                    elif event.get("operationType") in STRUCTURAL:
                        await self._structural(event)
                    else:
                        await self._learn_access(event)
                        self.dispatch(event)
                await self._drop_stream()
            except DatabaseError as error:
                self._lost()
                self._broken(error, backoff)
                await self._drop_stream()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _lost(self) -> None:
        """The stream stopped: changes may be missed until it follows again; observers are told."""
        self.following = False
        for observers in self.observers.values():
            for observer in observers:
                observer(None)

    def _broken(self, error: DatabaseError, backoff: float) -> None:
        if history_lost(error):
            log.error("change stream history lost: subscribers must resubscribe")
            self.position = ""
            self._expire_all()
        else:
            log.warning("change stream interrupted (%s); resuming in %.1fs", type(error).__name__, backoff)

    async def _structural(self, event: dict[str, Any]) -> None:
        """A collection (or the database) was dropped or renamed, say in the shell: its validator and
        indexes are made again, what was learned from it is forgotten, and the board is read again."""
        kind, coll = event["operationType"], (event.get("ns") or {}).get("coll")
        if kind != "invalidate":
            await self._remake(kind, coll)
        # Only once remade: if that failed, the stream reopens before this event and it is tried again.
        self.position = event["_id"]["_data"]

    async def _remake(self, kind: str, coll: str | None) -> None:
        log.warning("%s of %s: collections and indexes made again, caches reset", kind, coll or "the database")
        await self.db.prepare()
        for name in list(self.observers) if coll is None else [coll]:
            dropped = Change(self.position, name, "drop", None, None, None)
            for observer in self.observers.get(name, ()):
                observer(dropped)
        if coll is None or coll in ("connections", "presence", "documents"):
            await self._load_board()

    async def _learn_access(self, event: dict[str, Any]) -> None:
        """Presence on a document the board does not track yet: read who may see it now (presence
        records carry no access list, so one can never be stale); its changes keep it current."""
        if event.get("ns", {}).get("coll") != "presence":
            return
        document = (event.get("fullDocument") or {}).get("document")
        if not isinstance(document, ObjectId) or self.board.tracks(document):
            return
        found = await self.db.documents.find_one({"_id": document}, {"access": 1})
        self.board.grant(document, _readers(found))

    def dispatch(self, event: dict[str, Any]) -> None:
        """Route one change-stream event to every entitled subscription of this process."""
        self.position = event["_id"]["_data"]
        change = Change.from_event(event)
        if change is None:
            return
        deliveries = self.router.route(change, self.board)
        for observer in self.observers.get(change.coll, ()):
            try:
                observer(change)
            except Exception as error:  # a hand-made record an observer cannot read: skipped like any
                self._skipped(f"an observer of {change.coll}", change, error)
        ended = set(self.router.ended)
        if deliveries:
            streams: Counter[str] = Counter()
            for sub, frame in deliveries:
                if sub in ended:
                    self.unsubscribe(sub)
                    sub.sink.end(sub.id, frame)
                else:
                    sub.deliver(change.token, frame)
                streams[sub.stream] += 1
            for name, count in streams.items():
                EVENTS.labels(name).inc(count)
        if change.wall is not None:
            STREAM_LAG.set(max(0.0, (now() - change.wall).total_seconds()))

    def _skipped(self, where: str, change: Change, error: Exception) -> None:
        """A change (or one stream's part of it) that could not be routed: the stream goes on."""
        SKIPPED_CHANGES.labels(change.coll).inc()
        log.warning(
            "skipped a %s of %s %r for %s: %s: %s (the stored document does not have the shape the service "
            "writes; see docs/operations.md)",
            change.op, change.coll, change.id, where, type(error).__name__, str(error)[:200],
        )  # fmt: skip

    def _expire_all(self) -> None:
        for sub in list(self.subscriptions):
            self.unsubscribe(sub)
            sub.sink.end(sub.id, error_frame(CursorExpired(), sub.id))

    # --- subscriptions ----------------------------------------------------------------------

    async def subscribe(self, sub: Subscription, since: str | None) -> None:
        """Make `sub` live; with `since`, first replay its events after that cursor, gap-free."""
        stream = STREAMS[sub.stream]
        if since is None or not stream.replayable:
            self._go_live(sub)
            return
        if not CURSOR.match(since):
            raise BadRequest("since is not a cursor this service handed out")
        if self.replaying[sub.user] >= MAX_REPLAYS:
            raise RateLimited(1, f"at most {MAX_REPLAYS} replays at once per user; subscribe again when one is done")
        self.replaying[sub.user] += 1
        REPLAYS.inc()
        try:
            await self._resume(sub, since, stream)
        finally:
            REPLAYS.dec()
            self.replaying[sub.user] -= 1
            if self.replaying[sub.user] <= 0:
                del self.replaying[sub.user]

    async def _resume(self, sub: Subscription, since: str, stream: Stream) -> None:
        # Live events are held back from now on; the replay covers everything up to `until`.
        sub.buffer = []
        sub.buffer_limit = self.settings.ws_send_queue
        sub.buffer_bytes = self.settings.ws_send_bytes
        self._register(sub)
        until = self.position
        try:
            last = await self._replay(sub, since, until, stream)
        except BaseException:
            self.unsubscribe(sub)
            raise
        held, sub.buffer = sub.buffer or [], None
        for token, frame in held:
            if token > last:  # resume tokens order as strings: skip what the replay already sent
                sub.sink.push(frame)
        sub.sink.push(subscribed(sub.id, self.position))

    async def _replay(self, sub: Subscription, since: str, until: str, stream: Stream) -> str:
        # MongoDB keeps only this subscription's changes: a replay costs what it matches, not every
        # change since the cursor. The event the cursor names must pass too: MongoDB refuses to resume
        # from one it filtered out.
        wanted = {"$or": [stream.match(sub.user, sub.target), {"_id._data": since}]}
        pipeline = [*self.pipeline, {"$match": wanted}]
        try:
            replay = await self.db.watch(pipeline, since, max_await_ms=50)
        except OperationFailure as error:
            if history_lost(error):
                raise CursorExpired() from None
            raise BadRequest("since is not a cursor this service handed out") from None
        last = since
        fragments = Fragments()
        try:
            while True:
                event = await replay.try_next()
                if event is not None and (event := fragments.add(event)) is None:
                    continue
                if event is None:
                    # Caught up, or invalidated (the database was dropped): nothing more follows.
                    if (_position(replay) or "") >= until or not replay.alive:
                        return last
                    # Past every event it can match, the stream's position only moves on with a later
                    # write, and the event `until` names may be the last one yet: without one the
                    # replay waited seconds for the next heartbeat (1,000 events read in 0.1 s, then 3 s).
                    self.nudge()
                    continue
                REPLAY_READS.inc()
                token = event["_id"]["_data"]
                if token > until:
                    return last
                change = Change.from_event(event)
                frame = self.router.replay(sub, change) if change is not None else None
                if frame is not None:
                    await sub.sink.push_wait(frame)
                last = token
        finally:
            await bounded(replay.close(), 2.0)  # cancelled mid-replay (the socket went): never hang

    def _go_live(self, sub: Subscription) -> None:
        # First: if it fails, nothing is registered.
        opening = self.openers.get(sub.stream)
        if opening is None:
            frames = state(sub, self.board, self.position)
        else:
            frames = [sub.prefix + event_tail(sub.stream, audience, self.position) for audience in opening(sub)]
        self._register(sub)
        sub.sink.push(subscribed(sub.id, self.position))
        for frame in frames:
            sub.sink.push(frame)

    def _register(self, sub: Subscription) -> None:
        self.router.add(sub)
        self.subscriptions.add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self.router.remove(sub)
        self.subscriptions.discard(sub)
