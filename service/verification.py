"""Proving an email address: the verification letter, its token, and what proving it unlocks."""

from __future__ import annotations

from . import invites, tokens
from .accounts import Accounts, User, user_of
from .database import Document, ReturnDocument, Session
from .errors import BadRequest, Conflict
from .throttles import take

RESENDS_PER_HOUR = 3


async def verify(accounts: Accounts, token: str, caller: User | None = None) -> User:
    """Use a verification token: the address is proven, and every invite waiting for it becomes
    access, in one transaction; 400 if the token is unknown, used or expired. A signed-in `caller` can
    only verify their own account: the owner of an address someone else registered, signed in to their
    own account, does not hand the address to the squatter by opening the link."""
    db = accounts.db

    async def work(session: Session) -> Document:
        record = await tokens.redeem(db, tokens.VERIFY, token, session, caller.id if caller else None)
        if record is None:
            raise BadRequest("this verification code is unknown, used or expired; sign in and ask for a new one")
        return await proven(accounts, record, session)

    doc = await db.transaction(work)
    accounts.forget_user(doc["_id"])
    return user_of(doc)


async def proven(accounts: Accounts, record: Document, session: Session) -> Document:
    """The account `record` (a redeemed token) is for, now verified, its invites applied; 400 if the
    account no longer holds that address."""
    user: Document | None = await accounts.db.users.find_one_and_update(
        {"_id": record["user"], "email": record["email"]},
        {"$set": {"email_verified": True}},
        {"password": 0},
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    if user is None:
        raise BadRequest("this code is for an account or address that no longer exists")
    await invites.accept(accounts.db, user, record["email"], session)
    return user


async def resend(accounts: Accounts, user: User) -> None:
    """Queue another verification letter (at most RESENDS_PER_HOUR); 409 if already verified."""
    fresh = await accounts.db.users.find_one({"_id": user.id}, {"email_verified": 1})
    if fresh is not None and fresh.get("email_verified") is True:
        raise Conflict("this address is already verified")
    await take(accounts.db, {f"verify:resend:{user.id}": RESENDS_PER_HOUR}, 3600,
               "a verification letter was sent a moment ago; check your mail, or try again later")  # fmt: skip
    if await accounts.outbox.queue("verify", user.email, {}):
        accounts.outbox.poke()
