"""One websocket connection: authentication, client frames in, server frames out.

Frames out are written straight to the socket while it keeps up (see wire.py). When the socket's
buffer is full they wait in a bounded queue drained by one writer task, in order: a client that does
not keep up fills it and is disconnected with 4008 (it can come back with `since`), so it never
makes the server buffer without bound or slows anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from models.common import decode_object, parse
from models.rooms import MessageIn, message_out
from models.users import user_out

from . import documents, rooms
from .accounts import Accounts, User
from .config import Settings
from .database import Database, DatabaseError, ObjectId, now
from .errors import BadRequest, Conflict, Forbidden, RateLimited, ServiceError, Unauthorized, Unavailable
from .hub import Hub, error_frame
from .metrics import SLOW_CLIENTS, SOCKETS
from .ratelimit import RateLimiter
from .routing import STREAMS, Subscription, encode
from .wire import Wire

log = logging.getLogger("murmuration.ws")

CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHENTICATED = 4001
CLOSE_TOO_SLOW = 4008
MAX_SUBSCRIPTIONS = 100
PRESENCE_STATES = ("viewing", "editing", None)


class Transport(Protocol):
    """The part of Sanic's websocket this module uses."""

    async def recv(self, timeout: float | None = None) -> str | bytes | None: ...

    io_proto: Any  # the wire writes to its transport (wire.py)

    ws_proto: Any

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def fail_connection(self, code: int = 1006, reason: str = "") -> bool: ...


class Connection:
    def __init__(self, transport: Transport, hub: Hub, accounts: Accounts, db: Database, settings: Settings) -> None:
        self.transport = transport
        self.hub = hub
        self.accounts = accounts
        self.db = db
        self.settings = settings
        self.id = secrets.token_hex(12)
        self.user: User | None = None
        self.wire = Wire(transport) if transport is not None else None
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.ws_send_queue)
        self.holding = False  # the writer has taken a frame from the queue and not written it yet
        self.subs: dict[str, Subscription] = {}
        self.closed = False
        self.limiter = RateLimiter(settings.ws_frame_rate * 60, settings.ws_frame_rate * 2)
        self.writer: asyncio.Task[None] | None = None  # started the first time a frame has to wait

    # --- the sink the hub pushes to ---------------------------------------------------------

    def push(self, frame: str) -> None:
        if self.closed:
            return
        if self._direct():
            self.wire.write(frame)  # type: ignore[union-attr]  # _direct() checked it
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflow()
            return
        if self.writer is None and self.wire is not None:
            self.writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    async def push_wait(self, frame: str) -> None:
        if self.closed:
            return
        if self._direct():
            self.wire.write(frame)  # type: ignore[union-attr]
        elif self.queue.full():
            await self.queue.put(frame)  # the writer is running: the queue only fills while it waits
        else:
            self.push(frame)

    def _direct(self) -> bool:
        """Whether a frame can go to the socket now without overtaking frames that wait."""
        return self.wire is not None and not self.holding and self.queue.empty() and self.wire.ready()

    def end(self, sub_id: str, frame: str) -> None:
        self.subs.pop(sub_id, None)
        self.push(frame)

    def overflow(self) -> None:
        if self.closed:
            return
        SLOW_CLIENTS.inc()
        self._drop_subscriptions()
        self.closed = True
        self.transport.fail_connection(CLOSE_TOO_SLOW, "too slow: reconnect and resubscribe with since")

    # --- life cycle ---------------------------------------------------------------------------

    async def serve(self, header_token: str | None) -> None:
        try:
            self.user = await self._authenticate(header_token)
            if self.user is None:
                return
            await self.hub.connected(self.id, self.user.id)
            self.push(encode({"type": "ready", "user": user_out(self.user.doc())}))
            SOCKETS.inc()
            try:
                await self._read()
            finally:
                SOCKETS.dec()
        finally:
            self._drop_subscriptions()
            self.closed = True
            if self.writer is not None:
                self.writer.cancel()
            # Shielded: Sanic cancels the handler when the socket drops, and these records must
            # still go, or the user would stay "online" until this instance's heartbeat stops.
            await asyncio.shield(self._forget())

    async def _forget(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer
        if self.user is not None:
            with contextlib.suppress(DatabaseError):
                await self.hub.disconnected(self.id)

    async def _write(self) -> None:
        assert self.wire is not None  # push() starts the writer only for a connection with a wire
        with contextlib.suppress(Exception):
            while True:
                frame = await self.queue.get()
                self.holding = True
                if not await self.wire.drained():
                    return
                self.wire.write(frame)
                self.holding = False

    async def _authenticate(self, header_token: str | None) -> User | None:
        if header_token is not None:
            try:
                return await self.accounts.authenticate(header_token)
            except Unauthorized as error:
                await self.transport.close(CLOSE_UNAUTHENTICATED, error.message)
                return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ws_auth_timeout
        while not self.closed and (remaining := deadline - loop.time()) > 0:
            raw = await self._receive(remaining)
            if raw is None:
                continue
            try:
                frame = self._parse(raw)
                if frame.get("type") != "auth":
                    raise Unauthorized('authenticate first: {"type": "auth", "token": "..."}')
                token = frame.get("token")
                if not isinstance(token, str) or not token:
                    raise Unauthorized("the auth frame needs a token")
                return await self.accounts.authenticate(token)
            except ServiceError as error:
                self.push(error_frame(error))
        if not self.closed:
            await self.transport.close(CLOSE_UNAUTHENTICATED, "no authentication within the time allowed")
        return None

    async def _read(self) -> None:
        while not self.closed:
            raw = await self._receive()
            if raw is not None:
                await self.handle(raw)

    async def _receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next frame (None on timeout); one over the size limit closes the connection with 1009."""
        raw = await self.transport.recv(timeout=timeout)
        if raw is None or not self._too_big(raw):
            return raw
        self.closed = True
        await self.transport.close(CLOSE_TOO_BIG, f"frames are limited to {self.settings.ws_max_frame} bytes")
        return None

    def _too_big(self, raw: str | bytes) -> bool:
        limit = self.settings.ws_max_frame
        if isinstance(raw, bytes) or len(raw) * 4 <= limit:  # UTF-8 is at most 4 bytes a character
            return len(raw) > limit
        return len(raw.encode()) > limit

    def _drop_subscriptions(self) -> None:
        for sub in self.subs.values():
            self.hub.unsubscribe(sub)
        self.subs.clear()

    # --- frames in ----------------------------------------------------------------------------

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        wait = self.limiter.hit("frames")
        if wait:
            raise RateLimited(wait, "too many frames; slow down")
        return decode_object(raw, "a frame")

    async def handle(self, raw: str | bytes) -> None:
        frame_id: str | None = None
        extra: dict[str, Any] = {}
        try:
            frame = self._parse(raw)
            frame_id = frame["id"] if isinstance(frame.get("id"), str) else None
            if isinstance(frame.get("client_id"), str):
                extra["client_id"] = frame["client_id"]
            handler = HANDLERS.get(frame.get("type"))  # type: ignore[arg-type]
            if handler is None:
                raise BadRequest(f"unknown frame type {str(frame.get('type'))[:40]!r}")
            await handler(self, frame)
        except ServiceError as error:
            self.push(error_frame(error, frame_id, **extra))
        except DatabaseError as error:
            log.warning("database error on a websocket frame: %s", type(error).__name__)
            self.push(error_frame(Unavailable("the database is unavailable; try again shortly"), frame_id, **extra))

    async def on_auth_again(self, frame: dict[str, Any]) -> None:
        raise Conflict("this connection is already authenticated")

    async def on_ping(self, frame: dict[str, Any]) -> None:
        self.push('{"type":"pong"}')

    async def on_subscribe(self, frame: dict[str, Any]) -> None:
        assert self.user is not None
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
        target = await self._authorize(stream, params)
        sub = Subscription(sub_id, stream, self.user.id, target, self)
        self.subs[sub_id] = sub
        try:
            await self.hub.subscribe(sub, since)
        except BaseException:
            self.subs.pop(sub_id, None)
            raise

    async def _authorize(self, stream: str, params: dict[str, Any]) -> ObjectId | None:
        """The subscription's target, after checking the caller may see it (404 if not)."""
        assert self.user is not None
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
        doc = await target.check(self.db, self.user, value)
        found: ObjectId = doc["_id"]
        return found

    async def on_unsubscribe(self, frame: dict[str, Any]) -> None:
        sub = self.subs.pop(frame.get("id"), None)  # type: ignore[arg-type]
        if sub is None:
            raise BadRequest("no subscription with this id")
        self.hub.unsubscribe(sub)
        self.push(encode({"type": "unsubscribed", "id": sub.id}))

    async def on_chat_send(self, frame: dict[str, Any]) -> None:
        assert self.user is not None
        room = id_field(frame, "room")
        data = parse(MessageIn, {k: v for k, v in frame.items() if k in ("text", "client_id")})
        message, _ = await rooms.send(self.db, self.user, room, data)
        self.push(encode({"type": "ack", "client_id": message.get("client_id"), "message": message_out(message)}))

    async def on_chat_typing(self, frame: dict[str, Any]) -> None:
        assert self.user is not None
        room = id_field(frame, "room")
        await rooms.typing(self.db, self.user, room)

    async def on_presence(self, frame: dict[str, Any]) -> None:
        assert self.user is not None
        document_id, state = id_field(frame, "document"), frame.get("state")
        if state not in PRESENCE_STATES:
            raise BadRequest('state must be "viewing", "editing" or null')
        doc = await documents.visible(self.db, self.user, document_id)
        key = f"{self.id}:{doc['_id']}"
        if state is None:
            await self.hub.present(self.id, key, None)
            return
        if state == "editing" and not documents.can_edit(doc, self.user.id):
            raise Forbidden("viewers cannot edit this document")
        record = {
            "document": doc["_id"],
            "user": self.user.id,
            "name": self.user.name,
            "state": state,
            "access": doc.get("access", []),
            "at": now(),
        }
        await self.hub.present(self.id, key, record)


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


# Frame type -> handler, shared by every connection (a per-connection dict of bound methods cost
# about a kilobyte a socket).
HANDLERS: dict[str, Callable[[Connection, dict[str, Any]], Awaitable[None]]] = {
    "subscribe": Connection.on_subscribe,
    "unsubscribe": Connection.on_unsubscribe,
    "presence": Connection.on_presence,
    "ping": Connection.on_ping,
    "chat.send": Connection.on_chat_send,
    "chat.typing": Connection.on_chat_typing,
    "auth": Connection.on_auth_again,
}

TARGETS: dict[str, Target] = {
    "documents": Target("id", documents.visible),
    "presence": Target("document", documents.visible),
    "room": Target("room", rooms.joined),  # without params: every room the caller is in
}
