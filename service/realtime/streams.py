"""The streams a client can subscribe to, and for each the rule that says who sees what of a change.

A rule reads only the change (its pre- and post-image) and the board: authorization per event
without a query per event. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.coediting import b64, update_out
from models.contacts import contact_out
from models.documents import document_out, presence_out
from models.orders import order_out
from models.rooms import message_out, room_out, typing_out

from ..coediting.yjs import Awareness, write_awareness
from .board import Board, Delta
from .change import Change


@dataclass(frozen=True, slots=True)
class Audience:
    """One event as some readers see it: `users` None means every subscriber of the stream (of the
    target, when there is one: a `doc` subscription was authorized when it was made, and ends when
    access does).

    `target` is what targeted subscriptions are indexed by (a document, a room); the event's `id` is
    `event_id` when given (a message in a room), else the target.
    """

    op: str
    target: Any | None
    data: Any
    users: set[Any] | None
    event_id: Any | None = None


class Shaped:
    """A changed document as the API shows it, built on first need and at most twice per event: whole,
    or by `narrow` without what projections leave out (a roster of thousands). Each field's JSON is
    encoded once, so a projection costs the join of its fields' text, however many projections the
    subscribers chose (`fragments`)."""

    __slots__ = ("doc", "narrow", "parts", "shape", "shapes")

    def __init__(
        self,
        doc: dict[str, Any],
        shape: Callable[[dict[str, Any]], Any],
        narrow: Callable[[dict[str, Any], frozenset[str]], Any] | None = None,
    ) -> None:
        self.doc, self.shape, self.narrow = doc, shape, narrow
        self.shapes: dict[bool, Any] = {}  # whole (True) / narrowed (False)
        self.parts: dict[tuple[bool, str], str] = {}

    def shown(self, fields: frozenset[str] | None) -> Any:
        whole = self._whole(fields)
        found = self.shapes.get(whole)
        if found is None:
            if fields is None or self.narrow is None or whole:
                found = self.shape(self.doc)
            else:
                found = self.narrow(self.doc, fields)
            self.shapes[whole] = found
        return found

    def _whole(self, fields: frozenset[str] | None) -> bool:
        """Whether `fields` need the whole shape; otherwise the narrowed one (without the roster) serves."""
        return fields is None or self.narrow is None or "collaborators" in fields

    def fragments(self, fields: frozenset[str], encode: Callable[[Any], str]) -> str | None:
        """The JSON object of `fields` (in the shape's order), from fields encoded once each; None
        when the shape is not an object."""
        data = self.shown(fields)
        if not isinstance(data, dict):
            return None
        whole = self._whole(fields)
        out = []
        for name, value in data.items():
            if name in fields:
                part = self.parts.get((whole, name))
                if part is None:
                    part = self.parts[(whole, name)] = encode(name) + ":" + encode(value)
                out.append(part)
        return "{" + ",".join(out) + "}"


Rule = Callable[[Change, Board, Delta], list[Audience]]
# The change-stream $match a replay of (user, target) needs: MongoDB filters, the hub routes only those.
Match = Callable[[Any, Any | None], dict[str, Any]]


def nothing(user: Any, target: Any | None) -> dict[str, Any]:
    return {"_id": {"$exists": False}}  # a stream with nothing to replay


def reading(coll: str, field: str, target_field: str = "documentKey._id") -> Match:
    """Changes of `coll` whose document, before or after, lists the user in `field` (and is the target)."""

    def match(user: Any, target: Any | None) -> dict[str, Any]:
        query: dict[str, Any] = {
            "ns.coll": coll,
            "$or": [{f"fullDocument.{field}": user}, {f"fullDocumentBeforeChange.{field}": user}],
        }
        if target is not None:
            query[target_field] = target
        return query

    return match


def either(*matches: Match) -> Match:
    def match(user: Any, target: Any | None) -> dict[str, Any]:
        return {"$or": [each(user, target) for each in matches]}

    return match


@dataclass(frozen=True)
class Stream:
    name: str
    collections: frozenset[str]
    rule: Rule
    per_user: bool = True  # untargeted subscriptions are indexed per user (False: one shared key)
    replayable: bool = True  # events can be replayed from a cursor (state streams only send state)
    match: Match = nothing  # what a replay asks MongoDB for
    ephemeral: frozenset[str] = frozenset()  # collections whose changes are live-only signals
    ends: frozenset[str] = frozenset()  # ops after which a subscription is over (the server ends it)


def transitions(op: str, before: set[Any], after: set[Any]) -> dict[str, set[Any]]:
    """Which readers see which op: a reader who gains access gets `enter`, one who loses it `leave`."""
    if op == "insert":
        return {"insert": after}
    if op == "delete":
        return {"delete": before}
    return {"update": before & after, "enter": after - before, "leave": before - after}


def readers_rule(
    readers: Callable[[dict[str, Any] | None], set[Any]],
    shape: Callable[[Any], Any],
    narrow: Callable[[dict[str, Any], frozenset[str]], Any] | None = None,
) -> Rule:
    """A rule for a collection whose documents say who may read them. The data is shaped once for all
    its audiences, and only if some subscriber gets it (`Shaped`)."""

    def rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
        groups = transitions(change.op, readers(change.before), readers(change.after))
        data = Shaped(change.after, shape, narrow) if change.after is not None else None
        return [
            Audience(op, change.id, data if op in ("insert", "update", "enter") else None, users)
            for op, users in groups.items()
            if users
        ]

    return rule


def document_narrowed(doc: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return document_out(doc, roster="collaborators" in fields)


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


def _order_state(doc: dict[str, Any] | None) -> tuple[Any, Any, Any] | None:
    return (doc.get("status"), doc.get("transaction"), doc.get("refund")) if doc else None


def online_audience(board: Board) -> Audience:
    return Audience("update", None, {"count": board.count}, None)


def online_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    return [online_audience(board)] if delta.online else []


def doc_rule(change: Change, board: Board, delta: Delta) -> list[Audience]:
    """A document's CRDT updates and awareness to its `doc` subscribers; `leave` / `delete` (which end
    the subscription) to those who lose access."""
    if change.coll == "documents":
        groups = transitions(change.op, access(change.before), access(change.after))
        return [Audience(op, change.id, None, users) for op in ("leave", "delete") if (users := groups.get(op))]
    doc = change.after
    if change.coll == "doc_updates":
        if change.op != "insert" or doc is None:
            return []
        return [Audience("update", doc["document"], update_out(doc), None)]
    if doc is not None:  # awareness: the connection's latest states
        return [Audience("awareness", doc["document"], {"update": b64(doc["update"])}, None)]
    gone = change.before  # the connection closed: its clients are removed
    if gone is None:
        return []
    clients = gone.get("clients") or {}
    removal = [Awareness(int(client), int(clock) + 1, None) for client, clock in clients.items()]
    return [Audience("awareness", gone["document"], {"update": b64(write_awareness(removal))}, None)]


def doc_match(user: Any, target: Any | None) -> dict[str, Any]:
    """A `doc` replay: the target's updates, and the changes of the document that can end it."""
    return {
        "$or": [
            {"ns.coll": "doc_updates", "fullDocument.document": target},
            {**reading("documents", "access")(user, target)},
        ]
    }


STREAMS: dict[str, Stream] = {
    stream.name: stream
    for stream in (
        Stream(
            "contacts", frozenset({"contacts"}), readers_rule(owner, contact_out), match=reading("contacts", "owner")
        ),
        Stream(
            "documents",
            frozenset({"documents"}),
            readers_rule(access, document_out, document_narrowed),
            match=reading("documents", "access"),
        ),
        Stream("presence", frozenset({"presence", "documents"}), presence_rule, replayable=False),
        Stream("online", frozenset({"connections"}), online_rule, per_user=False, replayable=False),
        Stream(
            "room",
            frozenset({"messages", "rooms", "signals"}),
            room_rule,
            ephemeral=frozenset({"signals"}),
            match=either(reading("messages", "access", "fullDocument.room"), reading("rooms", "access")),
        ),
        Stream("orders", frozenset({"orders"}), orders_rule, match=reading("orders", "owner")),
        Stream(
            "doc",
            frozenset({"doc_updates", "awareness", "documents"}),
            doc_rule,
            match=doc_match,
            ephemeral=frozenset({"awareness"}),
            ends=frozenset({"leave", "delete"}),
        ),
    )
}
