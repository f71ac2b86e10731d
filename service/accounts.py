"""Accounts and sessions: argon2 password hashes, opaque bearer tokens stored only as hashes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from models.common import Unreadable
from models.users import LoginIn, RegisterIn, user_out

from .config import Settings
from .database import Database, DatabaseError, Document, DuplicateKeyError, ObjectId, Session, now
from .errors import Conflict, Unauthorized
from .mail.outbox import Outbox
from .stored import UNREADABLE, malformed, shown
from .throttles import take
from .tokens import token_hash

log = logging.getLogger("murmuration.accounts")
_hasher = PasswordHasher()
# Verifying against this when the email is unknown makes both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not a real password")


@dataclass(frozen=True, slots=True)
class User:
    id: ObjectId
    email: str
    name: str
    created_at: datetime
    email_verified: bool = False

    @classmethod
    def from_doc(cls, doc: Document) -> User:
        """The user a stored record describes; `Unreadable` if it is not one (hand-made, damaged)."""
        user_out(doc)  # every field the API shows has its type
        if not isinstance(doc["_id"], ObjectId):
            raise Unreadable("_id is not an ObjectId")
        # Only `true` proves the address: missing (an account made before verification existed) is not.
        return cls(doc["_id"], doc["email"], doc["name"], doc["created_at"], doc.get("email_verified") is True)

    def doc(self) -> Document:
        return {"_id": self.id, "email": self.email, "name": self.name, "created_at": self.created_at,
                "email_verified": self.email_verified}  # fmt: skip

    def ref(self) -> Document:
        """How documents and rooms store who did something: `{"_id", "name"}`."""
        return {"_id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Seen:
    """Where a session is used from, as `GET /auth/sessions` shows it."""

    address: str
    user_agent: str

    def fields(self) -> Document:
        return {"address": self.address[:100], "user_agent": self.user_agent[:256]}


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated token: its user, its session's key (the token's hash) and its expiry."""

    user: User
    session: str
    expires: datetime


class Accounts:
    """Accounts and sessions, with a per-process cache of authenticated tokens.

    The cache saves two database reads per request. It is kept exact by the change stream: the hub
    calls `forget` for every deleted session (a logout on any instance, an expiry), and the cache is
    only used while the hub's stream is live (`trusted`), so a revoked token never outlives the
    stream's lag (milliseconds).
    """

    CACHE_SIZE = 100_000

    TOUCH_EVERY = 60.0  # seconds: how stale a session's `last_used_at` may get (one write a minute at most)

    def __init__(
        self, db: Database, settings: Settings, outbox: Outbox, trusted: Callable[[], bool] = lambda: False
    ) -> None:
        self.db = db
        self.settings = settings
        self.outbox = outbox
        self.trusted = trusted
        self.cache: OrderedDict[str, tuple[User, datetime]] = OrderedDict()
        self.touched: OrderedDict[str, float] = OrderedDict()  # session key -> when last_used_at was written
        self.generation = 0  # moves at every revocation heard

    async def register(self, data: RegisterIn, seen: Seen) -> tuple[User, str]:
        """The account and its verification letter in one transaction: a crash cannot keep one without
        the other."""
        password_hash = await hash_password(data.password)
        doc = {"email": data.email, "name": data.name, "password": password_hash, "created_at": now(),
               "email_verified": False}  # fmt: skip

        async def work(session: Session) -> None:
            doc.pop("_id", None)  # a retried transaction inserts afresh
            doc["_id"] = (await self.db.users.insert_one(doc, session=session)).inserted_id
            await self.outbox.queue("verify", data.email, {}, session=session)

        try:
            await self.db.transaction(work)
        except DuplicateKeyError:
            raise Conflict("an account with this email already exists") from None
        self.outbox.poke()
        user = User.from_doc(doc)
        return user, await self._open_session(user, seen)

    async def login(self, data: LoginIn, seen: Seen) -> tuple[User, str]:
        """A slot is taken in each of the login's windows before the password is checked, atomically,
        so concurrent guesses cannot outrun the limit; a success gives them back."""
        email, address = data.email.strip().lower(), seen.address
        limit = self.settings.login_max_failures
        doc = await self.db.users.find_one({"email": email})
        known = doc.get("addresses") if doc else None
        familiar = isinstance(known, list) and address in known
        # This email from this address, and this address: always. This email from anywhere (guessing
        # spread over many addresses): not for an address the account signed in from before, so
        # nobody can lock its owner out of their usual places.
        slots = {f"login:email:{email}:{address}": limit, f"login:addr:{address}": limit * 4}
        if not familiar:
            slots[f"login:email:{email}"] = limit * 10
        await take(self.db, slots, self.settings.login_window, "too many failed logins; try again later")
        if not await password_matches(doc.get("password") if doc else None, data.password) or doc is None:
            raise Unauthorized("wrong email or password")  # the slots taken count this failure
        user = user_of(doc)
        emails = [f"login:email:{email}:{address}", f"login:email:{email}"]
        await self.db.throttles.delete_many({"_id": {"$in": emails}})
        await self.db.throttles.update_one({"_id": f"login:addr:{address}"}, {"$inc": {"failures": -1}})
        if not familiar:  # the last 10 addresses it signed in from (whatever the shell left in the field)
            kept = {"$cond": [{"$isArray": "$addresses"}, "$addresses", []]}
            last = {"$slice": [{"$concatArrays": [kept, [address]]}, -10]}
            await self.db.users.update_one({"_id": user.id}, [{"$set": {"addresses": last}}])
        return user, await self._open_session(user, seen)

    async def logout(self, token: str) -> None:
        key = token_hash(token)
        self.forget(key)
        await self.db.sessions.delete_one({"_id": key})

    def forget(self, key: str) -> None:
        self.cache.pop(key, None)
        self.generation += 1

    def forget_all(self) -> None:
        self.cache.clear()
        self.generation += 1

    def forget_user(self, user_id: object) -> None:
        """An account changed (verified, renamed, repaired in the shell): its cached copies go, so no
        instance answers with the old one. Rare, so a scan."""
        stale = [key for key, (user, _) in self.cache.items() if user.id == user_id]
        for key in stale:
            del self.cache[key]
        self.generation += 1

    def due(self, key: str) -> bool:
        """Whether the use of session `key` is to be recorded again (at most once a minute): a dict
        lookup, so a request pays nothing more on the other 59 seconds."""
        last = self.touched.get(key)
        return last is None or time.monotonic() - last >= self.TOUCH_EVERY

    async def touch(self, key: str, seen: Seen) -> None:
        """Record that the session `key` was used now, from where, if it is `due`."""
        if not self.due(key):
            return
        self.touched[key] = time.monotonic()
        self.touched.move_to_end(key)
        if len(self.touched) > self.CACHE_SIZE:
            self.touched.popitem(last=False)
        try:
            await self.db.sessions.update_one({"_id": key}, {"$set": {"last_used_at": now(), **seen.fields()}})
        except DatabaseError as error:  # a record of use is not worth failing the request it records
            log.warning("could not record a session's use: %s", type(error).__name__)

    def cached(self, key: str) -> User | None:
        """The user of a token (by its key, `token_hash`) known to be valid, without asking the database
        (None if not known)."""
        known = self._known(key)
        return known[0] if known else None

    def _known(self, key: str) -> tuple[User, datetime] | None:
        cached = self.cache.get(key)
        if cached is not None and self.trusted() and cached[1] > now():
            self.cache.move_to_end(key)
            return cached
        return None

    async def authenticate(self, token: str) -> User:
        return (await self.identify(token)).user

    async def identify(self, token: str) -> Identity:
        """Who a token belongs to, its session and when that ends; 401 if it is not a live session."""
        key = token_hash(token)
        known = self._known(key)
        if known is not None:
            return Identity(known[0], key, known[1])
        # A revocation heard while this lookup waits on MongoDB must win: what it read may be stale.
        generation = self.generation
        session = await self.db.sessions.find_one({"_id": key})
        expires = session.get("expires_at") if session else None
        owner = session.get("user") if session else None
        if not isinstance(expires, datetime) or expires <= now() or not isinstance(owner, ObjectId):
            raise Unauthorized("the token is unknown, expired or revoked")
        doc = await self.db.users.find_one({"_id": owner})
        if doc is None:
            raise Unauthorized("the token's account no longer exists")
        user = user_of(doc)
        if self.generation == generation:
            self.cache[key] = (user, expires)
            if len(self.cache) > self.CACHE_SIZE:
                self.cache.popitem(last=False)
        return Identity(user, key, expires)

    async def _open_session(self, user: User, seen: Seen) -> str:
        # A fixed prefix lets secret scanners spot leaked tokens, and no token starts with "-".
        token = "mm_" + secrets.token_urlsafe(32)
        created = now()
        key = token_hash(token)
        await self.db.sessions.insert_one(
            {
                "_id": key,
                "user": user.id,
                "created_at": created,
                "expires_at": created + timedelta(days=self.settings.token_ttl_days),
                "last_used_at": created,
                **seen.fields(),
            }
        )
        self.touched[key] = time.monotonic()
        # At most `max_sessions` per user: the oldest end (their sockets close, like a logout).
        extra = (
            self.db.sessions.find({"user": user.id}, {"_id": 1}).sort("created_at", -1).skip(self.settings.max_sessions)
        )
        oldest = [doc["_id"] async for doc in extra]
        if oldest:
            await self.db.sessions.delete_many({"_id": {"$in": oldest}})
        return token


async def by_email(db: Database, emails: Iterable[str]) -> dict[str, User]:
    """The verified accounts with these emails (only a proven address can be found by others); a
    stored user that cannot be read is left out (and reported)."""
    found = {"email": {"$in": list(emails)}, "email_verified": True}
    docs = await db.users.find(found, {"password": 0}).to_list()
    return {user.email: user for user in shown("users", docs, User.from_doc)}


def user_of(doc: Document) -> User:
    """The user a stored record describes; 401 if it cannot be read (reported for an operator)."""
    try:
        return User.from_doc(doc)
    except UNREADABLE as error:
        malformed("users", doc, error)
        raise Unauthorized("this account's stored record cannot be read; an operator can repair it") from None


async def hash_password(password: str) -> str:
    """A slow salted hash, off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def password_matches(stored: object, password: str) -> bool:
    """Whether `password` is the one `stored` hashes; a missing or hand-made hash costs the same time
    and never matches."""
    password_hash = stored if isinstance(stored, str) else _DUMMY_HASH
    return await asyncio.to_thread(_verify, password_hash, password) and isinstance(stored, str)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
