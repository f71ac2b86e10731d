"""The router: a committed change in, the subscriptions and frames it goes to out. No I/O.

Subscriptions are indexed by who they belong to and what they target, so routing a change costs
what its audience costs, not what all subscribers cost. Each distinct event (stream, op, data) is
serialized once; a subscriber's frame is its own constant prefix (`{"type":"event","sub":"s1",`)
joined to that shared tail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .board import Board, Delta
from .change import Change
from .frames import encode
from .streams import STREAMS, Audience, Shaped, Stream, online_audience, presence_audience

Key = tuple[Any, ...]


class Sink(Protocol):
    """Where a subscription's frames go: its websocket's session, which owns the bounded outbox."""

    def push(self, frame: str) -> None: ...

    async def push_wait(self, frame: str) -> None:
        """Queue a frame, waiting for room: for replays, which the client paces."""

    def end(self, sub_id: str, frame: str) -> None:
        """The server ended this subscription (it sends `frame` to say why); its id is free again."""

    def overflow(self) -> None:
        """The subscriber cannot keep up: it is to be disconnected (4008), not buffered for."""


@dataclass(eq=False, slots=True)
class Subscription:
    id: str
    stream: str
    user: Any
    target: Any | None
    sink: Sink
    fields: frozenset[str] | None = None  # only these fields of `data` (and its id); None: all of it
    prefix: str = field(init=False)
    buffer: list[tuple[str, str]] | None = None  # (token, frame) held back while a replay runs
    buffer_limit: int = 10_000
    buffer_bytes: int = 4 << 20  # what held-back frames may add up to (in characters)
    buffered: int = 0
    params: Any = None  # what the stream's opener needs (a `doc` subscription: the client's vector, its role)

    def __post_init__(self) -> None:
        self.prefix = '{"type":"event","sub":' + encode(self.id) + ","

    def deliver(self, token: str, frame: str) -> None:
        if self.buffer is None:
            self.sink.push(frame)
        elif len(self.buffer) < self.buffer_limit and self.buffered + len(frame) <= self.buffer_bytes:
            self.buffer.append((token, frame))
            self.buffered += len(frame)
        else:
            self.buffer = None
            self.sink.overflow()


def event_tail(stream: str, audience: Audience, cursor: str, fields: frozenset[str] | None = None) -> str:
    """An event frame without its subscriber's prefix. With `fields` (which always hold `id`), the
    data is only those fields, joined from JSON encoded once per event (Shaped.fragments)."""
    key = audience.target if audience.event_id is None else audience.event_id
    event_id = None if key is None else str(key)
    data = audience.data
    if fields is not None and isinstance(data, Shaped) and (joined := data.fragments(fields, encode)) is not None:
        head = encode({"stream": stream, "op": audience.op, "id": event_id})
        return f'{head[1:-1]},"data":{joined},"cursor":{encode(cursor)}}}'
    if isinstance(data, Shaped):
        data = data.shown(fields)
    if fields is not None and isinstance(data, dict):
        data = {name: value for name, value in data.items() if name in fields}
    body = encode({"stream": stream, "op": audience.op, "id": event_id, "data": data, "cursor": cursor})
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


# Told of a change (or one stream's part of it) that could not be routed: (where, change, error).
OnError = Callable[[str, Change, Exception], None]


class Router:
    """With `on_error`, a change that a stream's rule cannot route or encode (a document written by
    hand, by another version, with the validator bypassed) is skipped for that stream and reported;
    every other stream, and every other change, goes on. Without it, the error is raised."""

    def __init__(self, streams: dict[str, Stream] | None = None, on_error: OnError | None = None) -> None:
        self.streams = streams or STREAMS
        self.on_error = on_error
        self.index: dict[Key, set[Subscription]] = {}
        self.ended: list[Subscription] = []  # by the last change routed: their last frame ends them
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
        try:
            delta = board.apply(change)
        except Exception as error:
            self._failed("board", change, error)
            delta = Delta()
        out: list[tuple[Subscription, str]] = []
        self.ended = []
        for stream in self.by_collection.get(change.coll, ()):
            try:
                out.extend(self._deliveries(stream, change, board, delta))
            except Exception as error:
                self._failed(stream.name, change, error)
        return out

    def _deliveries(self, stream: Stream, change: Change, board: Board, delta: Delta) -> list[tuple[Subscription, str]]:
        out: list[tuple[Subscription, str]] = []
        for audience in stream.rule(change, board, delta):
            # Each projection is serialized once; subscribers that chose the same id and fields get
            # the same str object, so its websocket bytes are built once (wire.py), not once per socket.
            # A projection whose frame cannot be built (a roster written by hand that cannot be shown)
            # is skipped and reported; subscribers with another projection still get theirs.
            tails: dict[frozenset[str] | None, str | None] = {}
            frames: dict[tuple[str, frozenset[str] | None], str] = {}
            for sub in self._audience(stream, audience):
                frame = frames.get((sub.prefix, sub.fields))
                if frame is None:
                    if sub.fields not in tails:
                        tails[sub.fields] = self._tail(stream.name, audience, change, sub.fields)
                    tail = tails[sub.fields]
                    if tail is None:
                        continue
                    frame = frames[(sub.prefix, sub.fields)] = sub.prefix + tail
                out.append((sub, frame))
                if audience.op in stream.ends:
                    self.ended.append(sub)
        return out

    def _tail(self, stream: str, audience: Audience, change: Change, fields: frozenset[str] | None) -> str | None:
        try:
            return event_tail(stream, audience, change.token, fields)
        except Exception as error:
            self._failed(stream, change, error)
            return None

    def _failed(self, where: str, change: Change, error: Exception) -> None:
        if self.on_error is None:
            raise error
        self.on_error(where, change, error)

    def replay(self, sub: Subscription, change: Change) -> str | None:
        """The frame `change` makes for `sub` alone, for replaying history (stateless streams only)."""
        stream = self.streams[sub.stream]
        if change.coll not in stream.collections or change.coll in stream.ephemeral or not stream.replayable:
            return None
        try:
            for audience in stream.rule(change, Board(), Delta()):
                if audience.op in stream.ends:
                    continue  # access lost and found again since: the subscription was authorized now
                seen = audience.users is None or sub.user in audience.users
                if seen and (sub.target is None or sub.target == audience.target):
                    return sub.prefix + event_tail(stream.name, audience, change.token, sub.fields)
        except Exception as error:
            self._failed(stream.name, change, error)
        return None

    def _audience(self, stream: Stream, audience: Audience) -> Iterator[Subscription]:
        if audience.users is None:
            key = (stream.name,) if audience.target is None else (stream.name, "#", audience.target)
            yield from self.index.get(key, ())
            return
        for user in audience.users:
            yield from self.index.get((stream.name, user), ())
        if audience.target is not None:
            yield from _of(self.index.get((stream.name, "#", audience.target), ()), audience.users)


def _of(subs: Iterable[Subscription], users: set[Any]) -> Iterator[Subscription]:
    return (sub for sub in subs if sub.user in users)
