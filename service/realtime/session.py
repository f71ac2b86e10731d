"""One websocket's protocol, free of the socket: client frames in, server frames out.

A session is a small state machine:

    AUTHENTICATING --auth ok--> OPEN --too big / too slow / socket gone--> CLOSING | CLOSED
          └--bad header token, no auth in time, too big--> CLOSING

Frames in arrive through `receive`; frames out leave through its `Out` (the socket's outbox, or a
list in a test); when the connection must end, `closing` says with which code and the driver
(`connection.py`) closes the socket. Frame handlers run only in OPEN and receive the user, never
None. The session is also the `Sink` its subscriptions deliver to: it owns their ids.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from models.coediting import unb64
from models.documents import DocumentOut
from models.rooms import MessageIn, message_out
from models.users import user_out

from .. import documents, rooms, stored
from ..accounts import Accounts, Identity, User
from ..budget import WriteBudget
from ..coediting import yjs
from ..config import Settings
from ..database import Database, DatabaseError, ObjectId, failure, now, parse_id
from ..errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited, ServiceError, Unauthorized
from ..metrics import SLOW_CLIENTS
from ..payloads import decode_object, parse
from .deadlines import Entry
from .frames import PONG, encode, error_frame
from .hub import Hub
from .roster import Roster
from .router import Subscription
from .streams import STREAMS

log = logging.getLogger("murmuration.ws")

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
MAX_AUTH_ATTEMPTS = 5  # auth frames per connection: each may cost a database lookup
CLOSE_UNAUTHENTICATED = 4001
CLOSE_TOO_SLOW = 4008
MAX_SUBSCRIPTIONS = 100
PRESENCE_STATES = ("viewing", "editing", None)


class State(enum.Enum):
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"  # the session has said how the connection ends; the driver closes the socket
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


class Out(Protocol):
    """Where a session's frames go."""

    def push(self, frame: str) -> bool:
        """Send or queue `frame`; False when there is no room (the client is too slow)."""

    async def push_wait(self, frame: str) -> None:
        """Send or queue `frame`, waiting for room."""

    def abort(self, code: int, reason: str) -> None:
        """Close the connection at once."""


class Session:
    # One per socket: slots rather than an instance dict (about 60 bytes less each).
    __slots__ = (
        "accounts", "auth_attempts", "closing", "db", "expiry", "hub", "id", "out", "roster", "settings",
        "state", "subs", "user", "writes",
    )  # fmt: skip

    def __init__(
        self,
        out: Out,
        hub: Hub,
        roster: Roster,
        accounts: Accounts,
        db: Database,
        settings: Settings,
        writes: WriteBudget,
    ) -> None:
        self.out = out
        self.hub = hub
        self.roster = roster
        self.accounts = accounts
        self.db = db
        self.settings = settings
        self.id = secrets.token_hex(12)
        self.state = State.AUTHENTICATING
        self.user: User | None = None
        self.closing: Close | None = None
        self.expiry: Entry | None = None  # in the hub's deadlines
        self.auth_attempts = 0
        self.subs: dict[str, Subscription] = {}
        # The per-user write budget the REST routes spend (shared, so sockets are no way around it).
        self.writes = writes  # shared by every socket and request of the process: one budget per user

    # --- the sink the hub delivers to -------------------------------------------------------

    def push(self, frame: str) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if not self.out.push(frame):
            self.overflow()

    async def push_wait(self, frame: str) -> None:
        if self.state not in (State.CLOSING, State.CLOSED):
            await self.out.push_wait(frame)

    def end(self, sub_id: str, frame: str) -> None:
        sub = self.subs.pop(sub_id, None)
        self.push(frame)
        if sub is not None and sub.stream == "doc":
            self.hub.editors.later(self._release(sub))  # as an unsubscribe would

    def overflow(self) -> None:
        if self.state is State.CLOSED:
            return
        SLOW_CLIENTS.inc()
        self.shut()
        self.out.abort(CLOSE_TOO_SLOW, "too slow: reconnect and resubscribe with since")

    # --- life cycle -------------------------------------------------------------------------

    async def authenticate(self, token: str) -> None:
        """The token of the upgrade request's header: a bad one ends the connection (4001)."""
        try:
            identity = await self.accounts.identify(token)
        except Unauthorized as error:
            self._close(CLOSE_UNAUTHENTICATED, error.message)
            return
        await self._open(identity)

    def expire(self) -> None:
        """The login session behind this socket expired (its deadline in the hub's `expiries`)."""
        self.revoke("the session expired")

    def revoke(self, reason: str) -> None:
        """The login session behind this socket ended: it closes at once with 4001."""
        if self.state is State.CLOSED:
            return
        self.shut()
        self.out.abort(CLOSE_UNAUTHENTICATED, reason)

    def timed_out(self) -> None:
        """The time to authenticate is over."""
        if self.state is State.AUTHENTICATING:
            self._close(CLOSE_UNAUTHENTICATED, "no authentication within the time allowed")

    def shut(self) -> None:
        """The connection is gone (or going): the hub stops delivering to it."""
        if self.expiry is not None:
            self.hub.expiries.cancel(self.expiry)
        for sub in self.subs.values():
            self.hub.unsubscribe(sub)
            if sub.stream == "doc":
                self.hub.editors.closed(self.id, sub.target)
        self.hub.frames.forget(self.id)  # its frame budget goes with it
        self.hub.editors.gone(self.id)
        self.subs.clear()
        self.state = State.CLOSED

    async def forget(self) -> None:
        """Remove the connection's records (it no longer counts as online, its presence goes)."""
        if self.user is not None:
            with contextlib.suppress(DatabaseError):
                await self.roster.disconnected(self.id)

    async def _open(self, identity: Identity) -> None:
        if self.roster.per_user[identity.user.id] >= self.settings.ws_per_user:
            # Each socket may hold WS_SEND_BYTES; this bounds what one user can make the worker hold.
            self._close(CLOSE_POLICY, f"at most {self.settings.ws_per_user} connections per user; close one")
            return
        self.user = user = identity.user
        await self.roster.connected(self.id, user.id, identity.session, self.revoke)
        # Expiry needs no database event (MongoDB's TTL monitor deletes the session up to a minute late).
        seconds = (identity.expires - now()).total_seconds()
        self.expiry = self.hub.expiries.add(seconds, self)
        self.state = State.OPEN
        self.push(encode({"type": "ready", "user": user_out(user.doc())}))

    def _close(self, code: int, reason: str) -> None:
        self.closing = Close(code, reason)
        self.state = State.CLOSING

    # --- frames in --------------------------------------------------------------------------

    async def receive(self, raw: str | bytes) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if self._too_big(raw):
            self._close(CLOSE_TOO_BIG, f"frames are limited to {self.settings.ws_max_frame} bytes")
        elif self.state is State.AUTHENTICATING:
            await self._receive_auth(raw)
        elif self.user is not None:
            await self._receive_open(raw, self.user)

    def _too_big(self, raw: str | bytes) -> bool:
        limit = self.settings.ws_max_frame
        if isinstance(raw, bytes) or len(raw) * 4 <= limit:  # UTF-8 is at most 4 bytes a character
            return len(raw) > limit
        return len(raw.encode()) > limit

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        wait = self.hub.frames.hit(self.id)
        if wait:
            raise RateLimited(wait, "too many frames; slow down")
        return decode_object(raw, "a frame")

    async def _receive_auth(self, raw: str | bytes) -> None:
        """Before `ready`, only `{"type": "auth", "token": ...}`; a refusal is an error frame, and the
        client may try again until the time allowed is over."""
        self.auth_attempts += 1
        if self.auth_attempts > MAX_AUTH_ATTEMPTS:
            self._close(CLOSE_UNAUTHENTICATED, f"more than {MAX_AUTH_ATTEMPTS} attempts to authenticate")
            return
        try:
            frame = self._parse(raw)
            if frame.get("type") != "auth":
                raise Unauthorized('authenticate first: {"type": "auth", "token": "..."}')
            token = frame.get("token")
            if not isinstance(token, str) or not token:
                raise Unauthorized("the auth frame needs a token")
            identity = await self.accounts.identify(token)
        except ServiceError as error:
            self.push(error_frame(error))
            return
        await self._open(identity)

    async def _receive_open(self, raw: str | bytes, user: User) -> None:
        frame_id: str | None = None
        extra: dict[str, Any] = {}
        kind: Any = None
        try:
            frame = self._parse(raw)
            frame_id = frame["id"] if isinstance(frame.get("id"), str) else None
            if isinstance(frame.get("client_id"), str):
                extra["client_id"] = frame["client_id"]
            kind = frame.get("type")
            handler = HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise BadRequest(f"unknown frame type {str(kind)[:40]!r}")
            await handler(self, user, frame)
        except ServiceError as error:
            self.push(error_frame(error, frame_id, **extra))
        except DatabaseError as error:
            self.push(error_frame(failure(error), frame_id, **extra))
        except Exception:
            # A bug must not cost the client its connection (nor show it a trace): it is logged.
            log.exception("a %s frame failed", str(kind)[:40] if kind is not None else "malformed")
            self.push(error_frame(ServiceError(), frame_id, **extra))

    # --- frame handlers: OPEN only, with the session's user ---------------------------------

    async def on_auth_again(self, user: User, frame: dict[str, Any]) -> None:
        raise Conflict("this connection is already authenticated")

    async def on_ping(self, user: User, frame: dict[str, Any]) -> None:
        self.push(PONG)

    async def on_subscribe(self, user: User, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        if not isinstance(sub_id, str) or not 1 <= len(sub_id) <= 64:
            raise BadRequest("subscribe needs an id: a string of 1 to 64 characters")
        if sub_id in self.subs:
            raise Conflict(f"subscription {sub_id!r} already exists")
        if len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise BadRequest(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        stream = frame.get("stream")
        if not isinstance(stream, str) or stream not in STREAMS:
            raise BadRequest(f"unknown stream; one of {', '.join(STREAMS)}")
        params = frame.get("params") or {}
        since = frame.get("since")
        if not isinstance(params, dict):
            raise BadRequest("params must be an object")
        if since is not None and not isinstance(since, str):
            raise BadRequest("since must be a cursor string")
        fields = projection(stream, params.pop("fields")) if "fields" in params else None
        vector = self._vector(params.pop("vector")) if stream == "doc" and "vector" in params else None
        target = await self._authorize(user, stream, params)
        if stream == "doc" and target is None:
            raise BadRequest("the doc stream needs params.id: the document's id")
        # Two subscriptions to the same thing would carry every frame twice (each with its own id, so
        # its own bytes): one socket holds one of each.
        same = next((sub.id for sub in self.subs.values() if (sub.stream, sub.target) == (stream, target)), None)
        if same is not None:
            raise Conflict(f"this connection is already subscribed to {stream} with these params, as {same!r}")
        sub = Subscription(sub_id, stream, user.id, target, self, fields)
        if stream == "doc":
            await self._open_doc(user, sub, vector)
        self.subs[sub_id] = sub
        try:
            # A doc subscription's sync is taken from the replica: never while a write is half-way.
            opening = target if stream == "doc" and since is None else None
            async with self.hub.editors.settled(opening) if opening is not None else contextlib.nullcontext():
                await self.hub.subscribe(sub, since)
        except BaseException:
            self.subs.pop(sub_id, None)
            if stream == "doc":
                await self._release(sub)
            raise

    async def _authorize(self, user: User, stream: str, params: dict[str, Any]) -> ObjectId | None:
        """The subscription's target, after checking the caller may see it (404 if not)."""
        target = TARGETS.get(stream)
        allowed = {target.param} if target else set()
        unknown = set(params) - allowed
        if unknown:
            raise BadRequest(f"unknown params for {stream}: {', '.join(sorted(map(str, unknown)))}")
        if target is None or target.param not in params:
            return None
        value = params[target.param]
        if not isinstance(value, str):
            raise BadRequest(f"params.{target.param} must be an id string")
        doc = await target.check(self.db, user, value)
        found: ObjectId = doc["_id"]
        return found

    async def on_unsubscribe(self, user: User, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        sub = self.subs.pop(sub_id, None) if isinstance(sub_id, str) else None
        if sub is None:
            raise BadRequest("no subscription with this id")
        self.hub.unsubscribe(sub)
        self.push(encode({"type": "unsubscribed", "id": sub.id}))
        if sub.stream == "doc":
            await self._release(sub)

    # --- live co-editing (the `doc` stream) -------------------------------------------------

    def _vector(self, value: Any) -> bytes:
        data = unb64(value, 1 << 16) if isinstance(value, str) else None
        try:
            if data is None:
                raise yjs.BadUpdate("not base64")
            yjs.read_vector(data)  # the engine raises on what is not one, after the subscription began
        except yjs.BadUpdate:
            raise BadRequest("params.vector must be a base64 Yjs state vector") from None
        return data

    async def _open_doc(self, user: User, sub: Subscription, vector: bytes | None) -> None:
        """Hold the document live, show it as the sync of the subscription, and put the connection on
        its presence (editing for those who may edit)."""
        doc_id, role = await documents.role(self.db, user, str(sub.target))
        editors = self.hub.editors
        await editors.replica(doc_id)
        editors.opened(doc_id)
        sub.params = (vector, role)
        state = "editing" if role in documents.EDITORS else "viewing"
        record = {"document": doc_id, "user": user.id, "name": user.name, "state": state, "at": now()}
        with contextlib.suppress(DatabaseError):
            await self.roster.present(self.id, f"{self.id}:{doc_id}", record)

    def _release(self, sub: Subscription) -> Coroutine[Any, Any, None]:
        """A doc subscription ended: its document is no longer held for it (every way one ends goes
        through here: one that did not left its document pinned); what to run to take the connection
        off the document's presence and editors."""
        self.hub.editors.closed(self.id, sub.target)
        return self._left(sub)

    async def _left(self, sub: Subscription) -> None:
        with contextlib.suppress(DatabaseError):
            await self.roster.present(self.id, f"{self.id}:{sub.target}", None)
            await self.hub.editors.leave(self.id, sub.target)

    def _doc_frame(self, user: User, frame: dict[str, Any], limit: int) -> tuple[ObjectId, bytes]:
        document = id_field(frame, "document")
        data = frame.get("update")
        update = unb64(data, limit) if isinstance(data, str) else None
        if update is None:
            raise BadRequest(f"update must be base64 of at most {limit} bytes")
        return parse_id(document, "document"), update

    async def on_doc_update(self, user: User, frame: dict[str, Any]) -> None:
        document, update = self._doc_frame(user, frame, self.settings.coedit.update_bytes)
        self.hub.editors.pace(self.id)
        self.writes.spend(user.id, len(update))
        _, role = await documents.role(self.db, user, str(document))
        if role not in documents.EDITORS:
            raise Forbidden("viewers cannot edit this document")
        seq = await self.hub.editors.update(user, document, update)
        self.push(encode({"type": "doc.ack", "id": frame.get("id"), "document": str(document), "seq": seq}))

    async def on_doc_awareness(self, user: User, frame: dict[str, Any]) -> None:
        document, update = self._doc_frame(user, frame, 1 << 16)
        if not any(sub.stream == "doc" and sub.target == document for sub in self.subs.values()):
            raise NotFound("subscribe to the document's doc stream first")
        self.hub.editors.pace(self.id)
        await self.hub.editors.awareness(self.id, user, document, update)

    async def on_doc_save(self, user: User, frame: dict[str, Any]) -> None:
        document = parse_id(id_field(frame, "document"), "document")
        self.writes.spend(user.id, 0)
        version = await self.hub.editors.save(user, document)
        self.push(encode({"type": "doc.saved", "id": frame.get("id"), "document": str(document), "version": version}))

    async def on_chat_send(self, user: User, frame: dict[str, Any]) -> None:
        text = frame.get("text")
        self.writes.spend(user.id, len(text) if isinstance(text, str) else 0)
        room = id_field(frame, "room")
        data = parse(MessageIn, {k: v for k, v in frame.items() if k in ("text", "client_id")})
        message, _ = await rooms.send(self.db, user, room, data)
        shown = stored.one("messages", message, message_out)
        self.push(encode({"type": "ack", "client_id": shown["client_id"], "message": shown}))

    async def on_chat_typing(self, user: User, frame: dict[str, Any]) -> None:
        self.writes.spend(user.id, 0)
        await rooms.typing(self.db, user, id_field(frame, "room"))

    async def on_presence(self, user: User, frame: dict[str, Any]) -> None:
        document_id, state = id_field(frame, "document"), frame.get("state")
        if state not in PRESENCE_STATES:
            raise BadRequest('state must be "viewing", "editing" or null')
        self.writes.spend(user.id, 0)
        doc_id, role = await documents.role(self.db, user, document_id)
        key = f"{self.id}:{doc_id}"
        if state is None:
            await self.roster.present(self.id, key, None)
            return
        if state == "editing" and role not in documents.EDITORS:
            raise Forbidden("viewers cannot edit this document")
        record = {
            "document": doc_id,
            "user": user.id,
            "name": user.name,
            "state": state,
            "at": now(),
        }
        await self.roster.present(self.id, key, record)


# Streams whose events can be narrowed to some fields (`params.fields`): a reader that does not show
# the roster need not receive a 5,000-entry collaborator list with every save.
PROJECTABLE = {"documents": frozenset(DocumentOut.model_fields)}


def projection(stream: str, value: Any) -> frozenset[str]:
    """The projection asked for, with `id` (always shown): `["title"]` and `["id", "title"]` are one."""
    known = PROJECTABLE.get(stream)
    if known is None:
        raise BadRequest(f"unknown params for {stream}: fields")
    if not isinstance(value, list) or not 1 <= len(value) <= len(known) or not all(isinstance(f, str) for f in value):
        raise BadRequest(f"params.fields must be a list of field names: {', '.join(sorted(known))}")
    unknown = set(value) - known
    if unknown:
        named = ", ".join(sorted(unknown))[:200]
        raise BadRequest(f"params.fields: no field {named}; one of {', '.join(sorted(known))}")
    return frozenset(value) | {"id"}


def id_field(frame: dict[str, Any], name: str) -> str:
    value = frame.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"a {frame.get('type')} frame needs {name}: an id string")
    return value


@dataclass(frozen=True)
class Target:
    """A stream that may target one resource: its params key and who may see it."""

    param: str
    check: Callable[[Database, User, str], Awaitable[dict[str, Any]]]


# Frame type -> handler, shared by every session (a per-session dict of bound methods cost about a
# kilobyte a socket).
HANDLERS: dict[str, Callable[[Session, User, dict[str, Any]], Awaitable[None]]] = {
    "subscribe": Session.on_subscribe,
    "unsubscribe": Session.on_unsubscribe,
    "presence": Session.on_presence,
    "ping": Session.on_ping,
    "chat.send": Session.on_chat_send,
    "chat.typing": Session.on_chat_typing,
    "auth": Session.on_auth_again,
    "doc.update": Session.on_doc_update,
    "doc.awareness": Session.on_doc_awareness,
    "doc.save": Session.on_doc_save,
}

TARGETS: dict[str, Target] = {
    "documents": Target("id", documents.readable),
    "presence": Target("document", documents.readable),
    "room": Target("room", rooms.joined),  # without params: every room the caller is in
    "doc": Target("id", documents.readable),
}
