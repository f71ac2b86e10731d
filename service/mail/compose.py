"""Writing a queued letter when it is sent: from what is stored then, with fresh tokens.

A letter with nothing left to say is dropped (`None`): a verification for an address verified
meanwhile, a reset for an address with no account (the request was answered the same either way),
an invite withdrawn before it went out.
"""

from __future__ import annotations

from datetime import timedelta

from .. import tokens
from ..config import Settings
from ..database import Database, Document, ObjectId
from .letters import Letter, invitation, reset, verification

WHAT = {"document": "document", "room": "chat room"}


class Composer:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def __call__(self, letter: Document) -> Letter | None:
        kind, to, params = letter["kind"], letter["to"], letter.get("params")
        params = params if isinstance(params, dict) else {}
        if kind == "verify":
            return await self._verification(to)
        if kind == "reset":
            return await self._reset(to)
        if kind == "invite":
            return await self._invitation(params)
        raise ValueError(f"no letter of kind {kind!r}")

    async def _account(self, email: str) -> Document | None:
        user: Document | None = await self.db.users.find_one({"email": email}, {"password": 0})
        return user if user is not None and isinstance(user.get("_id"), ObjectId) else None

    async def _verification(self, to: str) -> Letter | None:
        user = await self._account(to)
        if user is None or user.get("email_verified") is True:
            return None
        hours = self.settings.verify_ttl_hours
        token = await tokens.issue(self.db, tokens.VERIFY, user["_id"], to, timedelta(hours=hours))
        return verification(self.settings.public_url, token, hours)

    async def _reset(self, to: str) -> Letter | None:
        user = await self._account(to)
        if user is None:
            return None
        minutes = self.settings.reset_ttl_minutes
        token = await tokens.issue(self.db, tokens.RESET, user["_id"], to, timedelta(minutes=minutes))
        return reset(user.get("name", ""), self.settings.public_url, token, minutes)

    async def _invitation(self, params: Document) -> Letter | None:
        if not isinstance(params.get("invite"), ObjectId):
            raise TypeError("params.invite is not an ObjectId")  # never a query
        invite = await self.db.invites.find_one({"_id": params["invite"]})
        if invite is None:
            return None
        what = WHAT.get(invite.get("kind", ""), "document")
        return invitation(params.get("by", ""), what, params.get("title", ""), self.settings.public_url)
