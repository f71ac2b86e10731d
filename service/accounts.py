"""Accounts and sessions: argon2 password hashes, opaque bearer tokens stored only as hashes."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from models.common import Unreadable
from models.users import LoginIn, RegisterIn, user_out

from .config import Settings
from .database import Database, Document, DuplicateKeyError, ObjectId, ReturnDocument, now
from .errors import Conflict, RateLimited, Unauthorized, ValidationFailed
from .stored import UNREADABLE, malformed, shown

_hasher = PasswordHasher()
# Verifying against this when the email is unknown makes both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not a real password")


@dataclass(frozen=True, slots=True)
class User:
    id: ObjectId
    email: str
    name: str
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: Document) -> User:
        """The user a stored record describes; `Unreadable` if it is not one (hand-made, damaged)."""
        user_out(doc)  # every field the API shows has its type
        if not isinstance(doc["_id"], ObjectId):
            raise Unreadable("_id is not an ObjectId")
        return cls(doc["_id"], doc["email"], doc["name"], doc["created_at"])

    def doc(self) -> Document:
        return {"_id": self.id, "email": self.email, "name": self.name, "created_at": self.created_at}

    def ref(self) -> Document:
        """How documents and rooms store who did something: `{"_id", "name"}`."""
        return {"_id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated token: its user, its session's key (the token's hash) and its expiry."""

    user: User
    session: str
    expires: datetime


def token_hash(token: str) -> str:
    """The key a token's session is stored under. Any string hashes (one that is not UTF-8, with lone
    surrogates, included), so a made-up token is just an unknown key."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Accounts:
    """Accounts and sessions, with a per-process cache of authenticated tokens.

    The cache saves two database reads per request. It is kept exact by the change stream: the hub
    calls `forget` for every deleted session (a logout on any instance, an expiry), and the cache is
    only used while the hub's stream is live (`trusted`), so a revoked token never outlives the
    stream's lag (milliseconds).
    """

    CACHE_SIZE = 100_000

    def __init__(self, db: Database, settings: Settings, trusted: Callable[[], bool] = lambda: False) -> None:
        self.db = db
        self.settings = settings
        self.trusted = trusted
        self.cache: OrderedDict[str, tuple[User, datetime]] = OrderedDict()
        self.generation = 0  # moves at every revocation heard

    async def register(self, data: RegisterIn) -> tuple[User, str]:
        password_hash = await asyncio.to_thread(_hasher.hash, data.password)
        doc = {"email": data.email, "name": data.name, "password": password_hash, "created_at": now()}
        try:
            result = await self.db.users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("an account with this email already exists") from None
        doc["_id"] = result.inserted_id
        user = User.from_doc(doc)
        return user, await self._open_session(user)

    async def login(self, data: LoginIn, address: str) -> tuple[User, str]:
        """A slot is taken in each of the login's windows before the password is checked, atomically,
        so concurrent guesses cannot outrun the limit; a success gives them back."""
        email = data.email.strip().lower()
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
        await self._take(slots)
        stored = doc.get("password") if doc else None
        password_hash = stored if isinstance(stored, str) else _DUMMY_HASH
        if not await asyncio.to_thread(_verify, password_hash, data.password) or doc is None:
            raise Unauthorized("wrong email or password")  # the slots taken count this failure
        user = _user(doc)
        emails = [f"login:email:{email}:{address}", f"login:email:{email}"]
        await self.db.throttles.delete_many({"_id": {"$in": emails}})
        await self.db.throttles.update_one({"_id": f"login:addr:{address}"}, {"$inc": {"failures": -1}})
        if not familiar:  # the last 10 addresses it signed in from (whatever the shell left in the field)
            kept = {"$cond": [{"$isArray": "$addresses"}, "$addresses", []]}
            last = {"$slice": [{"$concatArrays": [kept, [address]]}, -10]}
            await self.db.users.update_one({"_id": user.id}, [{"$set": {"addresses": last}}])
        return user, await self._open_session(user)

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

    def cached(self, token: str) -> User | None:
        """The user of a token known to be valid, without asking the database (None if not known)."""
        known = self._known(token_hash(token))
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
        user = _user(doc)
        if self.generation == generation:
            self.cache[key] = (user, expires)
            if len(self.cache) > self.CACHE_SIZE:
                self.cache.popitem(last=False)
        return Identity(user, key, expires)

    async def _open_session(self, user: User) -> str:
        # A fixed prefix lets secret scanners spot leaked tokens, and no token starts with "-".
        token = "mm_" + secrets.token_urlsafe(32)
        created = now()
        await self.db.sessions.insert_one(
            {
                "_id": token_hash(token),
                "user": user.id,
                "created_at": created,
                "expires_at": created + timedelta(days=self.settings.token_ttl_days),
            }
        )
        # At most `max_sessions` per user: the oldest end (their sockets close, like a logout).
        extra = (
            self.db.sessions.find({"user": user.id}, {"_id": 1}).sort("created_at", -1).skip(self.settings.max_sessions)
        )
        oldest = [doc["_id"] async for doc in extra]
        if oldest:
            await self.db.sessions.delete_many({"_id": {"$in": oldest}})
        return token

    async def _take(self, slots: dict[str, int]) -> None:
        """Take one attempt in each window (a window that has ended starts again: its end is in the
        query, not left to the TTL reaper); 429 if any is full."""
        stamp = now()
        fresh = stamp + timedelta(seconds=self.settings.login_window)
        live = {"$and": [{"$eq": [{"$type": "$expires_at"}, "date"]}, {"$gt": ["$expires_at", stamp]},
                         {"$isNumber": "$failures"}]}  # fmt: skip
        for key, limit in slots.items():
            window: Document | None = await self.db.throttles.find_one_and_update(
                {"_id": key},
                [{"$set": {
                    "failures": {"$cond": [live, {"$add": ["$failures", 1]}, 1]},
                    "expires_at": {"$cond": [live, "$expires_at", fresh]},
                }}],
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )  # fmt: skip
            if window is not None and window["failures"] > limit:
                wait = (window["expires_at"] - stamp).total_seconds()
                raise RateLimited(wait, "too many failed logins; try again later")


def no_account() -> ValidationFailed:
    """An address given to share with or add that no account has: a 422 naming the field, not a 404,
    which would say the document or room in the path is missing."""
    detail = {"field": "email", "message": "no account has this address"}
    return ValidationFailed("no user has this email", details=[detail])


async def by_email(db: Database, emails: Iterable[str]) -> dict[str, User]:
    """The accounts with these emails; a stored user that cannot be read is left out (and reported)."""
    docs = await db.users.find({"email": {"$in": list(emails)}}, {"password": 0}).to_list()
    return {user.email: user for user in shown("users", docs, User.from_doc)}


def _user(doc: Document) -> User:
    try:
        return User.from_doc(doc)
    except UNREADABLE as error:
        malformed("users", doc, error)
        raise Unauthorized("this account's stored record cannot be read; an operator can repair it") from None


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
