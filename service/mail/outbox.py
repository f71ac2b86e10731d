"""The outbox: a letter is a document in MongoDB before it is a mail, so nothing is lost between the
write that calls for it (an account created, in the same transaction) and its sending.

A supervised worker claims letters with a lease (`next_at` moves past the send's deadline), writes
each when it sends it (tokens are made then, so none is ever stored in clear), and records what
became of it: `sent`, `dropped` (nothing to say any more: already verified, no such account),
`failed` (refused for good, or still undelivered after `MAX_ATTEMPTS`), or back to `pending` with a
backoff. A crash mid-send lets the lease lapse and another worker sends it again: at least once, with
the same Message-ID, never lost. Finished letters are kept 30 days (TTL), then go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ..config import Settings
from ..database import Database, DatabaseError, Document, ObjectId, ReturnDocument, Session, now
from ..errors import RateLimited
from ..metrics import MAIL
from ..stored import malformed
from ..throttles import take
from .letters import Letter, message
from .smtp import MailDelayed, Mailer, MailRefused

log = logging.getLogger("murmuration.mail")

Compose = Callable[[Document], Awaitable[Letter | None]]

MAX_ATTEMPTS = 12  # with the default 30 s backoff doubling to an hour: about a day of trying
MAX_BACKOFF = 3600.0
KEPT = timedelta(days=30)
POLL = 2.0  # how often an idle worker looks for letters queued by other instances or due again


class Outbox:
    def __init__(self, db: Database, settings: Settings, mailer: Mailer | None, compose: Compose) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.compose = compose
        self.lease = timedelta(seconds=2 * settings.smtp_timeout + 5)  # the send, and writing it first
        self.wake = asyncio.Event()
        self.stopping = False

    async def queue(self, kind: str, to: str, params: dict[str, Any], session: Session | None = None) -> bool:
        """Queue a letter to `to` (in `session`'s transaction if given; `poke` once it commits). An
        invite, which strangers can cause, is not queued (False) if `to` had MAIL_PER_HOUR of them this
        hour: an address cannot be flooded through us, and its own letters (verify, reset: limited per
        account and per address where they are asked for) never wait behind strangers' invites."""
        stamp = now()
        if kind == "invite" and not await self._room_for(to, session):
            MAIL.labels(kind, "throttled").inc()
            log.warning("an invite letter was not queued: its address had %d this hour", self.settings.mail_per_hour)
            return False
        letter = {"kind": kind, "to": to, "params": params, "status": "pending", "attempts": 0,
                  "created_at": stamp, "next_at": stamp}  # fmt: skip
        await self.db.outbox.insert_one(letter, session=session)
        return True

    async def _room_for(self, to: str, session: Session | None) -> bool:
        """Take one of the hour's invite letters to `to`, atomically (concurrent shares cannot outrun it)."""
        try:
            await take(self.db, {f"mail:to:{to}": self.settings.mail_per_hour}, 3600, "", session)
        except RateLimited:
            return False
        return True

    def poke(self) -> None:
        """A letter was committed: the worker looks now instead of at its next poll."""
        self.wake.set()

    def wind_down(self) -> None:
        """Shutdown: finish the letter in hand, claim no other."""
        self.stopping = True
        self.wake.set()

    async def run(self) -> None:
        """Send letters as they come, until `wind_down` (supervised)."""
        while not self.stopping:
            self.wake.clear()  # before looking: a letter poked while the claim runs is not missed
            letter = await self._claim()
            if letter is None:
                try:
                    async with asyncio.timeout(POLL):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                continue
            await self._deliver(letter)

    async def _claim(self) -> Document | None:
        """The next letter due, leased to this worker. `attempts` is counted with a pipeline: one the shell
        left as text, null or a huge number reads as spent (the letter fails on its first delay) instead of
        failing the claim, which would hold every instance on that letter."""
        stamp = now()
        counted = {
            "$and": [{"$isNumber": "$attempts"}, {"$gte": ["$attempts", 0]}, {"$lt": ["$attempts", MAX_ATTEMPTS]}]
        }
        claimed: Document | None = await self.db.outbox.find_one_and_update(
            {"status": {"$in": ["pending", "sending"]}, "next_at": {"$lte": stamp}},
            [{"$set": {"status": "sending", "next_at": stamp + self.lease,
                       "attempts": {"$cond": [counted, {"$add": [{"$toLong": "$attempts"}, 1]}, MAX_ATTEMPTS]}}}],
            sort=[("next_at", 1)],
            return_document=ReturnDocument.AFTER,
        )  # fmt: skip
        return claimed

    async def _deliver(self, letter: Document) -> None:
        assert self.mailer is not None  # the worker runs only with SMTP configured
        kind = str(letter.get("kind"))[:20]
        try:
            to = letter["to"]
            if not isinstance(to, str) or not isinstance(letter["_id"], ObjectId):
                raise TypeError("to is not a string")
            written = await self.compose(letter)
            if written is None:
                return await self._finish(letter, kind, "dropped")
            await self.mailer.send(message(written, to, self.settings.mail_from, f"<{letter['_id']}@murmuration>"), to)
        except MailRefused as error:
            return await self._finish(letter, kind, "failed", str(error))
        except MailDelayed as error:
            return await self._retry(letter, kind, str(error), error.ours)
        except DatabaseError:
            raise  # MongoDB is away: the supervisor retries, the lease brings the letter back
        except Exception as error:  # a letter that cannot be written (an address no header can hold...)
            malformed("outbox", letter, error)
            return await self._finish(letter, kind, "failed", f"the letter cannot be written: {type(error).__name__}")
        await self._finish(letter, kind, "sent")

    async def _retry(self, letter: Document, kind: str, reason: str, ours: bool) -> None:
        """Try again later; after MAX_ATTEMPTS the letter fails, unless the fault is ours (credentials,
        MAIL_FROM, TLS): those letters wait, at the longest backoff, until an operator fixes the setting."""
        attempts = letter.get("attempts")
        attempts = int(attempts) if isinstance(attempts, int | float) else MAX_ATTEMPTS
        if attempts >= MAX_ATTEMPTS and not ours:
            return await self._finish(letter, kind, "failed", f"undelivered after {attempts} attempts: {reason}")
        wait = min(self.settings.mail_backoff * 2 ** min(attempts - 1, 20), MAX_BACKOFF)
        MAIL.labels(kind, "retry").inc()
        log.warning("a %s letter was not sent (%s); trying again in %.0f s", kind, reason, wait)
        await self.db.outbox.update_one(
            {"_id": letter["_id"], "status": "sending", "next_at": letter["next_at"]},
            {"$set": {"status": "pending", "next_at": now() + timedelta(seconds=wait), "last_error": reason}},
        )

    async def _finish(self, letter: Document, kind: str, outcome: str, reason: str | None = None) -> None:
        MAIL.labels(kind, outcome).inc()
        if outcome == "failed":
            log.error("a %s letter failed for good: %s (outbox %s)", kind, reason, letter.get("_id"))
        stamp = now()
        update: Document = {"status": outcome, "finished_at": stamp, "expires_at": stamp + KEPT}
        if reason is not None:
            update["last_error"] = reason
        # Only while this worker's lease holds: a lapsed lease means another worker has it now.
        await self.db.outbox.update_one(
            {"_id": letter["_id"], "status": "sending", "next_at": letter["next_at"]}, {"$set": update}
        )

    async def waiting(self) -> int | None:
        """Letters not yet sent (for /health; counted up to 100,000); None if MongoDB does not answer
        within 2 s."""
        try:
            return await self.db.outbox.count_documents(
                {"status": {"$in": ["pending", "sending"]}}, limit=100_000, maxTimeMS=2000
            )
        except DatabaseError:
            return None
