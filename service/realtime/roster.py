"""The roster: who is connected and present through this instance, kept in MongoDB for every hub.

Each authenticated connection is a record in `connections`, each presence one in `presence`, both
tagged with this process's instance id; every hub folds their changes into its board. The instance
beats in `instances` every `PRESENCE_TTL/3` seconds and removes the records of instances silent for
`PRESENCE_TTL`, so a crashed instance's users vanish within seconds. An instance that others took
for dead (a MongoDB outage longer than the TTL) puts its live records back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..database import Database, DatabaseError, Document, now
from .change import Change

log = logging.getLogger("murmuration.roster")


@dataclass(slots=True)
class LiveConnection:
    record: Document
    session: str  # the key of the login session it authenticated with
    revoke: Callable[[str], None]  # closes it (4001) with a reason
    presence: dict[str, Document] = field(default_factory=dict)
    # Set once the hub has seen the record come back; only while `connected` waits for that (an Event
    # kept for the connection's life was about 0.9 KB a socket).
    counted: asyncio.Future[None] | None = None


class Roster:
    def __init__(self, db: Database, settings: Settings, instance_id: str) -> None:
        self.db = db
        self.settings = settings
        self.instance_id = instance_id
        self.live: dict[str, LiveConnection] = {}  # this process's connections, to restore if reaped
        self.by_session: dict[str, set[str]] = {}  # login session key -> connection ids
        self.per_user: Counter[Any] = Counter()  # user id -> open connections in this process
        self.sessions_check_due = False  # `sessions` was dropped: which sockets' sessions are gone?
        self.beating_since: float | None = None  # this process's monotonic clock
        self.restore_due = False
        self.stopping = asyncio.Event()
        self.nudged = asyncio.Event()  # beat now: there is work for the heartbeat
        self.started = False

    def observe(self, change: Change | None) -> None:
        """The hub's observer of `connections`: one of ours came back on the stream, so it is counted.
        None (the stream broke, or the collection was dropped): our records are written again at the
        next beat, in case they went."""
        if change is None or change.op == "drop":
            self.restore_due = True
        elif change.op == "insert" and isinstance(change.id, str) and change.id in self.live:
            counted = self.live[change.id].counted
            if counted is not None and not counted.done():
                counted.set_result(None)

    def observe_sessions(self, change: Change | None) -> None:
        """The hub's observer of `sessions`: a session that ends (logout, expiry, deleted in the shell,
        on any instance) closes every socket of this process that authenticated with it."""
        if change is None or not change.ends_session:
            return
        if change.op == "drop":  # which sessions are gone is read back (new ones may exist already)
            self.sessions_check_due = True  # by the heartbeat, supervised, retried until it succeeds
            self.nudged.set()
            return
        self._revoke(str(change.id))

    def _revoke(self, session: str) -> None:
        for conn_id in list(self.by_session.get(session, ())):
            self.live[conn_id].revoke("the session ended (logout, expiry or revocation): sign in again")

    async def _revoke_missing(self) -> None:
        keys = list(self.by_session)
        found = {doc["_id"] async for doc in self.db.sessions.find({"_id": {"$in": keys}}, {"_id": 1})}
        for key in set(keys) - found:
            self._revoke(key)

    async def connected(self, conn_id: str, user: Any, session: str, revoke: Callable[[str], None]) -> None:
        """Record the connection, and return once the hub has seen it come back on the stream, so a
        client told `ready` is already counted in what `online` and `presence` show."""
        record = {"_id": conn_id, "user": user, "instance": self.instance_id, "at": now()}
        counted = asyncio.get_running_loop().create_future()
        live = self.live[conn_id] = LiveConnection(record, session, revoke, counted=counted)
        self.by_session.setdefault(session, set()).add(conn_id)
        self.per_user[user] += 1
        try:
            await self.db.connections.insert_one(record)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(counted, 5.0)
        finally:
            live.counted = None

    async def disconnected(self, conn_id: str) -> None:
        live = self.live.pop(conn_id, None)
        if live is not None:
            self.per_user[live.record["user"]] -= 1
            if self.per_user[live.record["user"]] <= 0:
                del self.per_user[live.record["user"]]
            others = self.by_session.get(live.session, set())
            others.discard(conn_id)
            if not others:
                self.by_session.pop(live.session, None)
        await self.db.presence.delete_many({"conn": conn_id})
        await self.db.awareness.delete_many({"conn": conn_id})
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

    # --- heartbeat and reaping --------------------------------------------------------------

    def wind_down(self) -> None:
        """Stop beating now, between beats (a write cancelled in flight can leave PyMongo waiting)."""
        self.stopping.set()
        self.nudged.set()

    async def heartbeat(self) -> None:
        """Beat and reap until wound down."""
        interval = self.settings.presence_ttl / 3
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.nudged.wait(), interval)
            self.nudged.clear()
            if self.stopping.is_set():
                return
            try:
                await self.beat()
                if self.restore_due:
                    self.restore_due = False
                    await self._restore()
                if self.sessions_check_due:
                    await self._revoke_missing()
                    self.sessions_check_due = False
                await self._reap()
            except DatabaseError as error:
                self.beating_since = None
                log.warning("heartbeat failed: %s", type(error).__name__)

    async def beat(self) -> None:
        result = await self.db.instances.update_one(
            {"_id": self.instance_id},
            # The database's clock, not this host's: a host running behind must not look dead to others.
            {"$currentDate": {"heartbeat_at": True}, "$set": {"name": self.settings.instance, "pid": os.getpid()}},
            upsert=True,
        )
        if self.beating_since is None:
            self.beating_since = time.monotonic()
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
        ttl = self.settings.presence_ttl
        if self.beating_since is None or time.monotonic() - self.beating_since < ttl:
            return
        # Silent for a TTL by the database's clock ($$NOW), like the heartbeats themselves.
        silent = {"$lt": ["$heartbeat_at", {"$subtract": ["$$NOW", ttl * 1000]}]}
        instances = [doc async for doc in self.db.instances.find({}, {"_id": 1, "silent": silent})]
        dead = [doc["_id"] for doc in instances if doc.get("silent") is True]
        if dead:
            log.info("removing %d silent instance(s): %s", len(dead), ", ".join(map(str, dead)))
            await self.db.instances.delete_many({"_id": {"$in": dead}})
        # Then the records of every instance without a live heartbeat: the silent ones just removed,
        # and any whose heartbeat record is gone (deleted in the shell, or written by hand).
        orphans = {"instance": {"$nin": [doc["_id"] for doc in instances if doc.get("silent") is not True]}}
        removed = (await self.db.presence.delete_many(orphans)).deleted_count
        removed += (await self.db.awareness.delete_many(orphans)).deleted_count
        removed += (await self.db.connections.delete_many(orphans)).deleted_count
        if removed:
            log.info("removed %d connection and presence record(s) of instances with no heartbeat", removed)

    async def leave(self) -> None:
        """This instance stops: its connections, presence and heartbeat go at once, not after a TTL."""
        with contextlib.suppress(DatabaseError):
            await self._forget([self.instance_id])

    async def _forget(self, instances: list[str]) -> None:
        await self.db.presence.delete_many({"instance": {"$in": instances}})
        await self.db.awareness.delete_many({"instance": {"$in": instances}})
        await self.db.connections.delete_many({"instance": {"$in": instances}})
        await self.db.instances.delete_many({"_id": {"$in": instances}})
