"""Routing: a committed change in, the subscriptions and frames it goes to out. No I/O.

Subscriptions are indexed by who they belong to and what they target, so routing a change costs
what its audience costs, not what all subscribers cost. Each distinct event (stream, op, data) is
serialized once; a subscriber's frame is its own constant prefix (`{"type":"event","sub":"s1",`)
joined to that shared tail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import ujson

from models.contacts import contact_out
from models.documents import document_out, presence_out
from models.orders import order_out
from models.rooms import message_out, room_out, typing_out

from .board import Board, Delta
from .change import Change

Key = tuple[Any, ...]


class Sink(Protocol):
    """Where a subscription's frames go: a connection's bounded send queue."""

    def push(self, frame: str) -> None: ...

    async def push_wait(self, frame: str) -> None:
        """Queue a frame, waiting for room: for replays, which the client paces."""

    def end(self, sub_id: str, frame: str) -> None:
        """The server ended this subscription (it sends `frame` to say why); its id is free again."""

    def overflow(self) -> None:
        """The subscriber cannot keep up: it is to be disconnected (4008), not buffered for."""


def encode(frame: Any) -> str:
    return ujson.dumps(frame, ensure_ascii=False, escape_forward_slashes=False)


@dataclass(eq=False, slots=True)
class Subscription:
    id: str
    stream: str
    user: Any
    target: Any | None
    sink: Sink
    prefix: str = field(init=False)
    buffer: list[tuple[str, str]] | None = None  # (token, frame) held back while a replay runs
    buffer_limit: int = 10_000

    def __post_init__(self) -> None:
        self.prefix = '{"type":"event","sub":' + encode(self.id) + ","

    def deliver(self, token: str, frame: str) -> None:
        if self.buffer is None:
            self.sink.push(frame)
        elif len(self.buffer) < self.buffer_limit:
            self.buffer.append((token, frame))
        else:
            self.buffer = None
            self.sink.overflow()


@dataclass(frozen=True, slots=True)
class Audience:
    """One event as some readers see it: `users` None means every subscriber of the stream.

    `target` is what targeted subscriptions are indexed by (a document, a room); the event's `id` is
    `event_id` when given (a message in a room), else the target.
    """

    op: str
    target: Any | None
    data: Any
    users: set[Any] | None
    event_id: Any | None = None


Rule = Callable[[Change, Board, Delta], list[Audience]]


@dataclass(frozen=True)
class Stream:
    name: str
    collections: frozenset[str]
    rule: Rule
    per_user: bool = True  # untargeted subscriptions are indexed per user (False: one shared key)
    replayable: bool = True  # events can be replayed from a cursor (state streams only send state)
    ephemeral: frozenset[str] = frozenset()  # collections whose changes are live-only signals


def transitions(op: str, before: set[Any], after: set[Any]) -> dict[str, set[Any]]:
    """Which readers see which op: a reader who gains access gets `enter`, one who loses it `leave`."""
    if op == "insert":
        return {"insert": after}
    if op == "delete":
        return {"delete": before}
    return {"update": before & after, "enter": after - before, "leave": before - after}


def readers_rule(readers: Callable[[dict[str, Any] | None], set[Any]], shape: Callable[[Any], Any]) -> Rule:
    """A rule for a collection whose documents say who may read them."""

    def rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
        groups = transitions(change.op, readers(change.before), readers(change.after))
        return [
            Audience(op, change.id, shape(change.after) if op in ("insert", "update", "enter") else None, users)
            for op, users in groups.items()
            if users
        ]

    return rule


def owner(doc: dict[str, Any] | None) -> set[Any]:
    return {doc["owner"]} if doc and "owner" in doc else set()


def access(doc: dict[str, Any] | None) -> set[Any]:
    return set(doc.get("access", ())) if doc else set()


def presence_audience(board: Board, document: Any, readers: set[Any]) -> Audience:
    viewing, editing = board.summary(document)
    return Audience("update", document, presence_out(str(document), viewing, editing), readers)


def presence_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    return [presence_audience(board, document, readers) for document, readers in delta.documents]


def room_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    """New messages to the members they were sent to; `enter`/`leave` as membership changes (a new
    room is entered by its members); typing."""
    doc = change.after
    if change.coll == "messages":
        if change.op != "insert" or doc is None:
            return []
        return [Audience("insert", doc["room"], message_out(doc), access(doc), event_id=change.id)]
    if change.coll == "signals":
        if doc is None or change.op == "delete":
            return []
        return [Audience("typing", doc["room"], typing_out(doc), access(doc) - {doc["user"]}, event_id=doc["user"])]
    groups = transitions(change.op, access(change.before), access(change.after))
    if change.op == "insert":  # a new room: its members enter it
        groups = {"enter": groups["insert"]}
    return [
        Audience(op, change.id, room_out(doc) if op == "enter" and doc else None, users)
        for op in ("enter", "leave")
        if (users := groups.get(op))
    ]


_order_readers = readers_rule(owner, order_out)


def orders_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    """Status changes of the caller's orders (lease bookkeeping changes nothing they can see)."""
    if change.op == "update" and _order_state(change.before) == _order_state(change.after):
        return []
    return _order_readers(change, board, delta)


def _order_state(doc: dict[str, Any] | None) -> tuple[Any, Any] | None:
    return (doc.get("status"), doc.get("transaction")) if doc else None


def online_audience(board: Board) -> Audience:
    return Audience("update", None, {"count": board.count}, None)


def online_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    return [online_audience(board)] if delta.online else []


STREAMS: dict[str, Stream] = {
    stream.name: stream
    for stream in (
        Stream("contacts", frozenset({"contacts"}), readers_rule(owner, contact_out)),
        Stream("documents", frozenset({"documents"}), readers_rule(access, document_out)),
        Stream("presence", frozenset({"presence", "documents"}), presence_rule, replayable=False),
        Stream("online", frozenset({"connections"}), online_rule, per_user=False, replayable=False),
        Stream("room", frozenset({"messages", "rooms", "signals"}), room_rule, ephemeral=frozenset({"signals"})),
        Stream("orders", frozenset({"orders"}), orders_rule),
    )
}


def event_tail(stream: str, audience: Audience, cursor: str) -> str:
    key = audience.target if audience.event_id is None else audience.event_id
    event_id = None if key is None else str(key)
    body = encode({"stream": stream, "op": audience.op, "id": event_id, "data": audience.data, "cursor": cursor})
    return body[1:]


def state(sub: Subscription, board: Board, cursor: str) -> list[str]:
    """What a state stream shows on subscribe: the current online count, or the presence on the
    target document (always one event) or on every document with someone on it the caller can read."""
    if sub.stream == "online":
        audiences = [online_audience(board)]
    elif sub.stream == "presence" and sub.target is not None:
        audiences = [presence_audience(board, sub.target, {sub.user})]
    elif sub.stream == "presence":
        audiences = [presence_audience(board, d, {sub.user}) for d in board.by_document if sub.user in board.readers(d)]
    else:
        audiences = []
    return [sub.prefix + event_tail(sub.stream, audience, cursor) for audience in audiences]


class Router:
    def __init__(self, streams: dict[str, Stream] | None = None) -> None:
        self.streams = streams or STREAMS
        self.index: dict[Key, set[Subscription]] = {}
        self.by_collection: dict[str, list[Stream]] = {}
        for stream in self.streams.values():
            for coll in stream.collections:
                self.by_collection.setdefault(coll, []).append(stream)

    @property
    def collections(self) -> list[str]:
        return sorted(self.by_collection)

    def key(self, sub: Subscription) -> Key:
        if sub.target is not None:
            return (sub.stream, "#", sub.target)
        return (sub.stream, sub.user) if self.streams[sub.stream].per_user else (sub.stream,)

    def add(self, sub: Subscription) -> None:
        self.index.setdefault(self.key(sub), set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        key = self.key(sub)
        subs = self.index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.index[key]

    def route(self, change: Change, board: Board) -> list[tuple[Subscription, str]]:
        """Fold `change` into `board`, then every (subscription, frame) it must reach."""
        delta = board.apply(change)
        out: list[tuple[Subscription, str]] = []
        for stream in self.by_collection.get(change.coll, ()):
            for audience in stream.rule(change, board, delta):
                tail = None
                # Subscribers that chose the same id get the same str object, so its websocket bytes
                # are built once (wire.py) and not once per socket.
                frames: dict[str, str] = {}
                for sub in self._audience(stream, audience):
                    frame = frames.get(sub.prefix)
                    if frame is None:
                        tail = tail or event_tail(stream.name, audience, change.token)
                        frame = frames[sub.prefix] = sub.prefix + tail
                    out.append((sub, frame))
        return out

    def replay(self, sub: Subscription, change: Change) -> str | None:
        """The frame `change` makes for `sub` alone, for replaying history (stateless streams only)."""
        stream = self.streams[sub.stream]
        if change.coll not in stream.collections or change.coll in stream.ephemeral or not stream.replayable:
            return None
        for audience in stream.rule(change, Board(), Delta()):
            seen = audience.users is None or sub.user in audience.users
            if seen and (sub.target is None or sub.target == audience.target):
                return sub.prefix + event_tail(stream.name, audience, change.token)
        return None

    def _audience(self, stream: Stream, audience: Audience) -> Iterator[Subscription]:
        if audience.users is None:
            yield from self.index.get((stream.name,), ())
            return
        for user in audience.users:
            yield from self.index.get((stream.name, user), ())
        if audience.target is not None:
            yield from _of(self.index.get((stream.name, "#", audience.target), ()), audience.users)


def _of(subs: Iterable[Subscription], users: set[Any]) -> Iterator[Subscription]:
    return (sub for sub in subs if sub.user in users)
