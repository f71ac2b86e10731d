"""Passwords: forgotten (a reset letter), reset (single use, ending every session), changed (ending
every session but the one that changed it)."""

from __future__ import annotations

from . import tokens
from .accounts import Accounts, User, hash_password, password_matches
from .database import Document, Session
from .errors import BadRequest, Forbidden
from .throttles import take
from .verification import proven

RESETS_PER_EMAIL = 3  # reset letters asked for one address per hour (whether it has an account or not)
RESETS_PER_ADDRESS = 20  # per client address per hour


async def forgot(accounts: Accounts, email: str, address: str) -> None:
    """Queue a reset letter for `email`. The same work whether or not it has an account (the letter
    is written when sent, and dropped then if there is none), so neither the answer nor its timing
    tells."""
    # The client's window first: a client past it creates no window for each address it makes up.
    slots = {f"reset:addr:{address}": RESETS_PER_ADDRESS, f"reset:email:{email}": RESETS_PER_EMAIL}
    await take(accounts.db, slots, 3600, "too many password resets asked for; try again later")
    if await accounts.outbox.queue("reset", email, {}):
        accounts.outbox.poke()


async def reset(accounts: Accounts, token: str, password: str) -> None:
    """Set a new password with a reset token: used once, and every session of the account ends (their
    sockets close with 4001). Reading the letter proved the address, so it is verified too."""
    db = accounts.db
    bad = BadRequest("this reset code is unknown, used or expired; ask for a new one")
    if await tokens.peek(db, tokens.RESET, token) is None:  # before the costly hash
        raise bad
    password_hash = await hash_password(password)

    async def work(session: Session) -> Document:
        record = await tokens.redeem(db, tokens.RESET, token, session)
        if record is None:
            raise bad
        user = await proven(accounts, record, session)
        await db.users.update_one({"_id": user["_id"]}, {"$set": {"password": password_hash}}, session=session)
        await db.sessions.delete_many({"user": user["_id"]}, session=session)
        await tokens.revoke(db, tokens.RESET, user["_id"], session)
        return user

    user = await db.transaction(work)
    accounts.forget_user(user["_id"])


async def change(accounts: Accounts, user: User, session_key: str, current: str, password: str) -> None:
    """A new password for the caller, who proves the current one (limited like logins); every other
    session of the account ends, the caller's (`session_key`) stays."""
    db = accounts.db
    slot = f"password:{user.id}"
    await take(db, {slot: accounts.settings.login_max_failures}, accounts.settings.login_window,
               "too many wrong passwords; try again later")  # fmt: skip
    stored = await db.users.find_one({"_id": user.id}, {"password": 1})
    if stored is None or not await password_matches(stored.get("password"), current):
        raise Forbidden("the current password is wrong")
    password_hash = await hash_password(password)

    async def work(session: Session) -> None:
        await db.users.update_one({"_id": user.id}, {"$set": {"password": password_hash}}, session=session)
        # Reset codes stay: they prove the address, and whoever holds it must be able to take the account
        # back from whoever holds the password (a squatter changing it in a loop included).
        await db.sessions.delete_many({"user": user.id, "_id": {"$ne": session_key}}, session=session)
        await db.throttles.delete_one({"_id": slot}, session=session)

    await db.transaction(work)
