"""The hub: one change stream per worker process, fanned out to this process's subscriptions.

node (a worker) -> broker (MongoDB's change stream: every committed write, whoever made it)
-> hub (this: routes each change to the subscriptions entitled to it, see `routing`).

It also keeps this instance's heartbeat in MongoDB and removes the connections and presence of
instances whose heartbeat stopped, so a crashed instance's users vanish within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .board import Board
from .change import OPERATIONS, Change
from .config import Settings
from .database import Database, DatabaseError, Document, OperationFailure, Stream, history_lost, now
from .errors import BadRequest, CursorExpired, ServiceError
from .metrics import EVENTS, STREAM_LAG
from .routing import STREAMS, Router, Subscription, encode, state

log = logging.getLogger("murmuration.hub")

CURSOR = re.compile(r"^[0-9A-Fa-f]{16,512}$")


def _position(stream: Stream) -> str | None:
    token = stream.resume_token
    return str(token["_data"]) if token else None


class Hub:
    def __init__(
        self, db: Database, settings: Settings, listeners: dict[str, Callable[[Change], None]] | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.instance_id = f"{settings.instance}/{os.getpid()}/{secrets.token_hex(3)}"
        self.router = Router()
        self.board = Board()
        self.position = ""  # the last resume token this hub has routed up to
        self.healthy = False
        self.subscriptions: set[Subscription] = set()
        # Listeners hear every change of their collection (the token cache hears session deletions).
        self.listeners = listeners or {}
        watched = sorted({*self.router.collections, *self.listeners})
        self.pipeline: list[dict[str, Any]] = [
            {"$match": {"operationType": {"$in": list(OPERATIONS)}, "ns.coll": {"$in": watched}}}
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.on_gap: list[Callable[[], None]] = []  # called when the stream breaks: caches must not be trusted
        self.live: dict[str, LiveConnection] = {}  # this process's connections, to restore if reaped
        self.beating_since: datetime | None = None
        self.started = False

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._beat()
        stream = await self.db.watch(self.pipeline, None)
        self.position = _position(stream) or ""
        # The stream is open before the state is read, so nothing falls between; folding a change
        # the state already holds is harmless (the board works by ids).
        self.board.load(await self.db.connections.find().to_list(), await self.db.presence.find().to_list())
        self.healthy = True
        self._tasks = [
            asyncio.create_task(self._follow(stream), name="hub-follow"),
            asyncio.create_task(self._heartbeat(), name="hub-heartbeat"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(DatabaseError):
            await self._forget([self.instance_id])

    # --- the change stream ------------------------------------------------------------------

    async def _follow(self, stream: Stream | None) -> None:
        backoff = 0.1
        while True:
            try:
                if stream is None:
                    stream = await self.db.watch(self.pipeline, self.position or None)
                    log.info("change stream resumed")
                while True:
                    event = await stream.try_next()
                    self.healthy = True
                    backoff = 0.1
                    if event is None:
                        self.position = _position(stream) or self.position
                    else:
                        self.dispatch(event)
            except asyncio.CancelledError:
                if stream is not None:
                    with contextlib.suppress(Exception):
                        await stream.close()
                raise
            except DatabaseError as error:
                self.healthy = False
                for on_gap in self.on_gap:
                    on_gap()
                if stream is not None:
                    with contextlib.suppress(Exception):
                        await stream.close()
                stream = None
                if history_lost(error):
                    log.error("change stream history lost: subscribers must resubscribe")
                    self.position = ""
                    self._expire_all()
                else:
                    log.warning("change stream interrupted (%s); resuming in %.1fs", type(error).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def dispatch(self, event: dict[str, Any]) -> None:
        """Route one change-stream event to every entitled subscription of this process."""
        change = Change.from_event(event)
        self.position = event["_id"]["_data"]
        if change is None:
            return
        listener = self.listeners.get(change.coll)
        if listener is not None:
            listener(change)
        deliveries = self.router.route(change, self.board)
        if change.coll == "connections" and change.op == "insert" and change.id in self.live:
            self.live[change.id].counted.set()
        if deliveries:
            streams: Counter[str] = Counter()
            for sub, frame in deliveries:
                sub.deliver(change.token, frame)
                streams[sub.stream] += 1
            for name, count in streams.items():
                EVENTS.labels(name).inc(count)
        if change.wall is not None:
            STREAM_LAG.set(max(0.0, (now() - change.wall).total_seconds()))

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
        # Live events are held back from now on; the replay covers everything up to `until`.
        sub.buffer = []
        sub.buffer_limit = self.settings.ws_send_queue
        self._register(sub)
        until = self.position
        try:
            last = await self._replay(sub, since, until)
        except BaseException:
            self.unsubscribe(sub)
            raise
        held, sub.buffer = sub.buffer or [], None
        for token, frame in held:
            if token > last:  # resume tokens order as strings: skip what the replay already sent
                sub.sink.push(frame)
        sub.sink.push(self._subscribed(sub))

    async def _replay(self, sub: Subscription, since: str, until: str) -> str:
        try:
            replay = await self.db.watch(self.pipeline, since, max_await_ms=50)
        except OperationFailure as error:
            if history_lost(error):
                raise CursorExpired() from None
            raise BadRequest("since is not a cursor this service handed out") from None
        last = since
        async with replay:
            while True:
                event = await replay.try_next()
                if event is None:
                    if (_position(replay) or "") >= until:
                        return last
                    continue
                token = event["_id"]["_data"]
                if token > until:
                    return last
                change = Change.from_event(event)
                frame = self.router.replay(sub, change) if change is not None else None
                if frame is not None:
                    await sub.sink.push_wait(frame)
                last = token

    def _go_live(self, sub: Subscription) -> None:
        self._register(sub)
        sub.sink.push(self._subscribed(sub))
        for frame in state(sub, self.board, self.position):
            sub.sink.push(frame)

    def _subscribed(self, sub: Subscription) -> str:
        """`subscribed`, with the cursor everything before which this subscription has been given:
        a client that sees no event before it drops still resumes from there (an addition)."""
        frame = {"type": "subscribed", "id": sub.id}
        if self.position:
            frame["cursor"] = self.position
        return encode(frame)

    def _register(self, sub: Subscription) -> None:
        self.router.add(sub)
        self.subscriptions.add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self.router.remove(sub)
        self.subscriptions.discard(sub)

    # --- connections, presence and instance heartbeats ------------------------------------

    async def connected(self, conn_id: str, user: Any) -> None:
        """Record the connection, and return once this hub has seen it come back on the stream, so a
        client told `ready` is already counted in what `online` and `presence` show."""
        record = {"_id": conn_id, "user": user, "instance": self.instance_id, "at": now()}
        live = self.live[conn_id] = LiveConnection(record)
        await self.db.connections.insert_one(record)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.counted.wait(), 5.0)

    async def disconnected(self, conn_id: str) -> None:
        self.live.pop(conn_id, None)
        await self.db.presence.delete_many({"conn": conn_id})
        await self.db.connections.delete_one({"_id": conn_id})

    async def present(self, conn_id: str, key: str, record: Document | None) -> None:
        """Set (or, with None, clear) one presence of a connection of this process."""
        live = self.live.get(conn_id)
        if record is None:
            if live is not None:
                live.presence.pop(key, None)
            await self.db.presence.delete_one({"_id": key})
            return
        record = {**record, "conn": conn_id, "instance": self.instance_id}
        if live is not None:
            live.presence[key] = record
        await self.db.presence.replace_one({"_id": key}, record, upsert=True)

    async def _heartbeat(self) -> None:
        interval = self.settings.presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
                await self._reap()
            except DatabaseError as error:
                self.beating_since = None
                log.warning("heartbeat failed: %s", type(error).__name__)

    async def _beat(self) -> None:
        result = await self.db.instances.update_one(
            {"_id": self.instance_id},
            {"$set": {"heartbeat_at": now(), "name": self.settings.instance, "pid": os.getpid()}},
            upsert=True,
        )
        if self.beating_since is None:
            self.beating_since = now()
        if result.upserted_id is not None and self.started:
            # Another instance took this one for dead (say, after a MongoDB outage longer than the
            # TTL) and removed its records while its clients were still connected: put them back.
            log.warning("this instance was presumed dead; restoring %d connection(s)", len(self.live))
            await self._restore()
        self.started = True

    async def _restore(self) -> None:
        for live in list(self.live.values()):
            await self.db.connections.replace_one({"_id": live.record["_id"]}, live.record, upsert=True)
            for key, record in list(live.presence.items()):
                await self.db.presence.replace_one({"_id": key}, record, upsert=True)

    async def _reap(self) -> None:
        # After an outage every instance beats again within one interval; until this one has been
        # beating for a whole TTL, a silent peer may just not have had its turn yet.
        ttl = timedelta(seconds=self.settings.presence_ttl)
        if self.beating_since is None or now() - self.beating_since < ttl:
            return
        cutoff = now() - ttl
        dead = [doc["_id"] async for doc in self.db.instances.find({"heartbeat_at": {"$lt": cutoff}}, {"_id": 1})]
        if dead:
            log.info("removing %d silent instance(s): %s", len(dead), ", ".join(dead))
            await self._forget(dead)

    async def _forget(self, instances: list[str]) -> None:
        await self.db.presence.delete_many({"instance": {"$in": instances}})
        await self.db.connections.delete_many({"instance": {"$in": instances}})
        await self.db.instances.delete_many({"_id": {"$in": instances}})


@dataclass
class LiveConnection:
    record: Document
    presence: dict[str, Document] = field(default_factory=dict)
    counted: asyncio.Event = field(default_factory=asyncio.Event)


def error_frame(error: ServiceError, sub_id: str | None = None, **extra: Any) -> str:
    """The websocket form of a ServiceError (the same code and message as an HTTP answer)."""
    frame: dict[str, Any] = {"type": "error"}
    if sub_id is not None:
        frame["id"] = sub_id
    frame["code"] = error.code
    frame["message"] = error.message
    return encode({**frame, **extra})
