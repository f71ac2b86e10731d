"""The keeper: save points when typing has gone quiet, and compaction of long logs. Every instance
runs one (supervised); each step is a conditional write, so two instances doing it at once are safe.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ..config import Settings
from ..database import Binary, Database, ObjectId, Session, now
from . import ledger
from .editors import load_until, save_point
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
            await save_point(self.db, document)
        crowded = self.db.documents.find({"live.compact": True}, {"_id": 1}).limit(BATCH)
        for document in [doc["_id"] async for doc in crowded]:
            await self.compact(document)

    async def compact(self, document: ObjectId) -> int:
        """Fold the updates older than COEDIT_KEEP into the document's snapshot; how many were folded.
        The text is the same before and after (the snapshot is those updates' own state)."""
        cutoff = now() - timedelta(seconds=self.limits.keep)
        old = await self.db.doc_updates.find_one(
            {"document": document, "at": {"$lt": cutoff}}, {"seq": 1}, sort=[("seq", -1)]
        )
        if old is None:
            return 0  # nothing old enough yet: it stays due, and is looked at again next round
        cut = ledger.number(old.get("seq"))

        async def work(session: Session) -> int:
            replica = Replica()
            await load_until(self.db, document, replica, cut, session)
            state = replica.missing(None)
            await self.db.doc_snapshots.replace_one(
                {"_id": document}, {"seq": cut, "state": Binary(state), "at": now()}, upsert=True, session=session
            )
            folded = await self.db.doc_updates.delete_many(
                {"document": document, "seq": {"$lte": cut}}, session=session
            )
            await self.db.documents.update_one(
                {"_id": document}, {"$set": {"live.snapshot": cut}, "$unset": {"live.compact": ""}}, session=session
            )
            return int(folded.deleted_count)

        folded: int = await self.db.transaction(work)
        log.info("compacted %d update(s) of document %s into its snapshot (up to %d)", folded, document, cut)
        return folded
