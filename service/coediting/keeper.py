"""The keeper: save points when typing has gone quiet, and compaction of long logs. Every instance
runs one (supervised); each step is a conditional write, so two instances doing it at once are safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from ..config import Settings
from ..database import Binary, Database, ObjectId, OperationFailure, Session, now, transient
from ..errors import ServiceError
from ..metrics import COMPACTED, COMPACTIONS
from ..stored import malformed
from . import ledger
from .editors import save_point
from .replica import Replica

log = logging.getLogger("murmuration.coediting")

ROUND = 1.0  # seconds between rounds
BATCH = 100  # documents per round and kind of work


class Keeper:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.limits = settings.coedit
        self.rounds = 0

    async def run(self) -> None:
        while True:
            await self.round()
            self.rounds += 1
            await asyncio.sleep(ROUND)

    async def round(self) -> None:
        due = self.db.documents.find({"live.save_after": {"$lte": now()}}, {"_id": 1}).limit(BATCH)
        for document in [doc["_id"] async for doc in due]:
            await self._each(document, save_point(self.db, document), "live.save_after")
        crowded = self.db.documents.find({"live.compact": True}, {"_id": 1}).limit(BATCH)
        for document in [doc["_id"] async for doc in crowded]:
            await self._each(document, self.compact(document), "live.compact")

    async def _each(self, document: ObjectId, work: Awaitable[Any], due: str) -> None:
        """One document's work. A document that cannot be saved or compacted (written by hand: no
        version, a garbled log) is reported and is no longer due (its next write makes it due again),
        so a pile of them cannot fill every round; the task stays up (an outage of MongoDB still fails
        it, for /health to say)."""
        try:
            await work
        except (OperationFailure, ValueError, ServiceError) as error:
            if isinstance(error, OperationFailure) and transient(error):
                raise
            malformed("documents", {"_id": document}, error)
            with contextlib.suppress(OperationFailure):  # a `live` that is not an object is not due anyway
                await self.db.documents.update_one({"_id": document}, {"$unset": {due: ""}})

    async def compact(self, document: ObjectId) -> int:
        """Fold the updates older than COEDIT_KEEP into the document's snapshot; how many were folded.
        The text is the same before and after (the snapshot is those updates' own state)."""
        await ledger.checkpoint(self.db, document, self.limits.compact_after)
        cutoff = now() - timedelta(seconds=self.limits.keep)
        old = await self.db.doc_updates.find_one(
            {"document": document, "at": {"$lt": cutoff}}, {"seq": 1}, sort=[("seq", -1)]
        )
        if old is None:
            return 0  # nothing old enough yet: it stays due, and is looked at again next round
        cut = ledger.number(old.get("seq"))

        async def work(session: Session) -> int:
            replica = Replica()
            await ledger.load(self.db, document, replica, session, until=cut)
            state = replica.missing(None)
            await self.db.doc_snapshots.update_one(  # the head, if any, stays
                {"_id": document}, {"$set": {"seq": cut, "state": Binary(state), "at": now()}}, upsert=True,
                session=session,
            )  # fmt: skip
            folded = await self.db.doc_updates.delete_many(
                {"document": document, "seq": {"$lte": cut}}, session=session
            )
            await self.db.documents.update_one(
                {"_id": document}, {"$set": {"live.snapshot": cut}, "$unset": {"live.compact": ""}}, session=session
            )
            return int(folded.deleted_count)

        started = time.perf_counter()
        folded: int = await self.db.transaction(work)
        took = time.perf_counter() - started
        COMPACTIONS.observe(took)
        COMPACTED.inc(folded)
        log.info(
            "compacted %d update(s) of document %s into its snapshot (up to %d) in %.0f ms",
            folded, document, cut, took * 1000,
        )  # fmt: skip
        return folded
