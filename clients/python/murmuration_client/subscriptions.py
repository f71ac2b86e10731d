"""What a connection must send and where each frame goes: the protocol's state, with no I/O.

A subscription's cursor is the last one delivered for it: the `subscribed` frame's (where it went
live), then each event's once its consumer has it queued. Every (re)connection subscribes again from
it, so nothing is missed and, since the server replays only what comes after a cursor, nothing comes
twice. A subscription whose consumer falls behind is paused (unsubscribed, its cursor kept) and resumed
from its cursor once the consumer catches up: one slow consumer never holds up the others, and memory
stays bounded without losing an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Streams of changes, replayed from a cursor. The others (presence, online) are states: they send the
# whole state on every subscribe, so they are subscribed again without a cursor.
REPLAYABLE = frozenset({"contacts", "documents", "room", "orders"})


@dataclass(frozen=True, slots=True)
class Event:
    """One change: `op` is insert, update, delete, enter, leave (or typing on `room`)."""

    subscription: str
    stream: str
    op: str
    id: str | None
    data: dict[str, Any] | None
    cursor: str | None


@dataclass(slots=True)
class Subscription:
    id: str
    stream: str
    params: dict[str, Any]
    cursor: str | None = None
    live: bool = False
    paused: bool = False
    # Unsubscribed (paused) and the server has not said `unsubscribed` yet: what it sent before then
    # belongs to the old subscription, even once resumed (the new one replays it from the cursor).
    draining: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """What an incoming frame means: `kind` is event, live, refused, ack, pong or ignored."""

    kind: str
    subscription: str | None = None
    event: Event | None = None
    frame: dict[str, Any] = field(default_factory=dict)


class Subscriptions:
    """The subscriptions of one client, across any number of connections."""

    def __init__(self) -> None:
        self.active: dict[str, Subscription] = {}
        self.sends: dict[str, dict[str, Any]] = {}  # chat sends not yet acknowledged, by client_id

    def add(self, sub_id: str, stream: str, params: dict[str, Any], since: str | None) -> dict[str, Any]:
        self.active[sub_id] = Subscription(sub_id, stream, params, since)
        return self._subscribe(self.active[sub_id])

    def remove(self, sub_id: str) -> dict[str, Any]:
        self.active.pop(sub_id, None)
        return {"type": "unsubscribe", "id": sub_id}

    def send_chat(self, room: str, text: str, client_id: str) -> dict[str, Any]:
        frame = {"type": "chat.send", "room": room, "text": text, "client_id": client_id}
        self.sends[client_id] = frame
        return frame

    def on_connect(self) -> list[dict[str, Any]]:
        """The frames a new connection starts with: every subscription from its cursor, then every
        chat send not acknowledged yet (the server acknowledges a repeat without storing it twice)."""
        for sub in self.active.values():
            sub.live, sub.draining = False, False  # a new socket carries nothing of the old subscriptions
        running = [self._subscribe(sub) for sub in self.active.values() if not sub.paused]
        return running + list(self.sends.values())

    def delivered(self, sub_id: str, cursor: str | None) -> None:
        """The consumer has the event: the subscription resumes after it from now on."""
        sub = self.active.get(sub_id)
        if sub is not None and cursor:
            sub.cursor = cursor

    def pause(self, sub_id: str) -> dict[str, Any] | None:
        """Stop a subscription whose consumer is behind; its cursor stays at the last event delivered."""
        sub = self.active.get(sub_id)
        if sub is None or sub.paused:
            return None
        sub.paused, sub.live, sub.draining = True, False, True
        return {"type": "unsubscribe", "id": sub_id}

    def resume(self, sub_id: str) -> dict[str, Any] | None:
        """Subscribe again from the cursor a paused subscription stopped at."""
        sub = self.active.get(sub_id)
        if sub is None or not sub.paused:
            return None
        sub.paused = False
        return self._subscribe(sub)

    def receive(self, frame: dict[str, Any]) -> Delivery:
        kind, sub_id = frame.get("type"), frame.get("sub") or frame.get("id")
        sub = self.active.get(sub_id) if isinstance(sub_id, str) else None
        if kind == "unsubscribed" and sub is not None:
            sub.draining = False
            return Delivery("ignored", frame=frame)
        if sub is not None and sub.draining and kind in ("event", "subscribed"):
            return Delivery("ignored", frame=frame)
        if kind == "event" and sub is not None and not sub.paused:
            event = Event(sub.id, str(frame.get("stream")), str(frame.get("op")), frame.get("id"), frame.get("data"),
                          frame.get("cursor"))  # fmt: skip
            return Delivery("event", sub.id, event, frame)
        if kind == "subscribed" and sub is not None and not sub.paused:
            sub.live = True
            sub.cursor = sub.cursor or frame.get("cursor")
            return Delivery("live", sub.id, frame=frame)
        if kind == "ack" and isinstance(frame.get("client_id"), str):
            self.sends.pop(frame["client_id"], None)
            return Delivery("ack", frame=frame)
        if kind == "error":
            if sub is not None:
                self.active.pop(sub.id, None)
                return Delivery("refused", sub.id, frame=frame)
            if isinstance(frame.get("client_id"), str):
                self.sends.pop(frame["client_id"], None)
                return Delivery("refused", frame=frame)
        if kind == "pong":
            return Delivery("pong", frame=frame)
        return Delivery("ignored", frame=frame)

    @staticmethod
    def _subscribe(sub: Subscription) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "id": sub.id, "stream": sub.stream, "params": sub.params}
        if sub.cursor and sub.stream in REPLAYABLE:
            frame["since"] = sub.cursor
        return frame
