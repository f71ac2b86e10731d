"""Routing is pure: a change in, subscriptions and frames out; no database, no sockets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from models.documents import DocumentOut, document_out
from service.errors import CursorExpired
from service.realtime import router as routing
from service.realtime import streams
from service.realtime.board import Board
from service.realtime.change import Change
from service.realtime.router import Router, Subscription
from service.realtime.session import projection

NOW = datetime(2026, 11, 20, tzinfo=UTC)


class Sink:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.ended: list[str] = []
        self.overflowed = False

    def push(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    async def push_wait(self, frame: str) -> None:
        self.push(frame)

    def end(self, sub_id: str, frame: str) -> None:
        self.ended.append(sub_id)
        self.push(frame)

    def overflow(self) -> None:
        self.overflowed = True


def document(owner: ObjectId, *readers: ObjectId, version: int = 1) -> dict[str, Any]:
    return {
        "_id": DOC,
        "title": "t",
        "slug": "t",
        "version": version,
        "owner": {"_id": owner, "name": "o"},
        "collaborators": [{"_id": r, "name": "r", "role": "viewer"} for r in readers],
        "access": [owner, *readers],
        "created_at": NOW,
        "updated_at": NOW,
    }


DOC = ObjectId()
ANN, BOB, CAT = ObjectId(), ObjectId(), ObjectId()
OTHER = ObjectId()


def change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, token: str = "82AA") -> Change:
    return Change(token, "documents", op, DOC, before, after)


def subscribe(router: Router, user: ObjectId, stream: str = "documents", target: Any = None, sub_id: str = "s") -> Sink:
    sink = Sink()
    router.add(Subscription(sub_id, stream, user, target, sink))
    return sink


def deliver(router: Router, board: Board, event: Change) -> None:
    for sub, frame in router.route(event, board):
        sub.deliver(event.token, frame)


def test_an_update_reaches_every_reader_and_nobody_else() -> None:
    router, board = Router(), Board()
    ann, bob, cat = subscribe(router, ANN), subscribe(router, BOB), subscribe(router, CAT)
    deliver(router, board, change("update", document(ANN, BOB), document(ANN, BOB, version=2)))
    assert [f["op"] for f in ann.frames] == ["update"] and [f["op"] for f in bob.frames] == ["update"]
    assert cat.frames == []
    assert ann.frames[0]["data"]["version"] == 2 and ann.frames[0]["cursor"] == "82AA"


def test_gaining_access_is_enter_and_losing_it_is_leave_with_no_data() -> None:
    router, board = Router(), Board()
    bob, cat = subscribe(router, BOB), subscribe(router, CAT)
    deliver(router, board, change("update", document(ANN, BOB), document(ANN, CAT)))
    assert [(f["op"], f["data"]) for f in bob.frames] == [("leave", None)]
    assert [f["op"] for f in cat.frames] == ["enter"] and cat.frames[0]["data"]["id"] == str(DOC)


def test_a_delete_is_routed_by_its_pre_image() -> None:
    router, board = Router(), Board()
    bob = subscribe(router, BOB)
    deliver(router, board, change("delete", document(ANN, BOB), None))
    assert [(f["op"], f["id"], f["data"]) for f in bob.frames] == [("delete", str(DOC), None)]


def test_a_targeted_subscription_sees_only_its_document_and_only_if_allowed() -> None:
    router, board = Router(), Board()
    mine = subscribe(router, BOB, target=DOC)
    other = subscribe(router, BOB, target=ObjectId())
    deliver(router, board, change("update", document(ANN, BOB), document(ANN, BOB)))
    deliver(router, board, change("update", document(ANN), document(ANN)))  # no longer his
    assert [f["op"] for f in mine.frames] == ["update"] and other.frames == []


def test_each_event_is_serialized_once_for_all_its_subscribers(monkeypatch: pytest.MonkeyPatch) -> None:
    router, board = Router(), Board()
    sinks = [subscribe(router, ANN, sub_id=f"s{i}") for i in range(1000)]
    calls = []
    real = routing.encode
    monkeypatch.setattr(routing, "encode", lambda value: calls.append(1) or real(value))
    out = router.route(change("update", document(ANN), document(ANN)), board)
    assert len(out) == 1000 and len(calls) == 1
    assert {json.loads(frame)["sub"] for _, frame in out} == {f"s{i}" for i in range(1000)}
    assert sinks[0].frames == []  # route() computes; the hub delivers


def test_routing_cost_follows_the_audience_not_the_subscriber_count() -> None:
    router, board = Router(), Board()
    strangers = [ObjectId() for _ in range(10_000)]
    for user in strangers:
        subscribe(router, user)
    touched: list[Any] = []
    original = router.index.get

    def spying_get(key: Any, default: Any = None) -> Any:
        touched.append(key)
        return original(key, default)

    router.index = type("SpyDict", (dict,), {"get": lambda self, k, d=None: spying_get(k, d)})(router.index)
    router.route(change("update", document(ANN, BOB), document(ANN, BOB)), board)
    assert len(touched) <= 3  # Ann's key, Bob's key, the document's key: never the 10,000 others


def test_a_replaying_subscription_holds_live_events_back() -> None:
    router, board = Router(), Board()
    sink = Sink()
    sub = Subscription("s", "documents", ANN, None, sink)
    sub.buffer = []
    router.add(sub)
    deliver(router, board, change("update", document(ANN), document(ANN), token="82BB"))
    assert sink.frames == [] and [token for token, _ in sub.buffer] == ["82BB"]


def test_a_buffer_that_overflows_disconnects_instead_of_growing() -> None:
    sink = Sink()
    sub = Subscription("s", "documents", ANN, None, sink, buffer=[], buffer_limit=2)
    for i in range(3):
        sub.deliver(f"82{i}", "{}")
    assert sink.overflowed and sub.buffer is None


def test_the_board_counts_distinct_online_users() -> None:
    board = Board()

    def conn(op: str, conn_id: str, user: ObjectId | None = None) -> bool:
        after = {"_id": conn_id, "user": user} if user else None
        return board.apply(Change("t", "connections", op, conn_id, None, after)).online

    assert conn("insert", "a", ANN) and board.count == 1
    assert not conn("insert", "b", ANN) and board.count == 1  # a second tab
    assert conn("insert", "c", BOB) and board.count == 2
    assert not conn("delete", "a") and conn("delete", "b") and board.count == 1


def test_presence_goes_to_readers_of_the_document_only() -> None:
    router, board = Router(), Board()
    ann, cat = subscribe(router, ANN, "presence"), subscribe(router, CAT, "presence")
    board.grant(DOC, [ANN, BOB])  # what the hub reads from the document before the first presence on it
    entry = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "editing"}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, entry))
    assert ann.frames[0]["data"] == {"document": str(DOC), "viewing": [], "editing": [{"id": str(BOB), "name": "Bob"}]}
    assert cat.frames == []
    deliver(router, board, Change("t2", "presence", "delete", "c1:d", None, None))
    assert ann.frames[1]["data"] == {"document": str(DOC), "viewing": [], "editing": []}


def test_someone_let_into_a_document_sees_who_is_already_on_it() -> None:
    router, board = Router({"presence": streams.STREAMS["presence"]}), Board()
    cat = subscribe(router, CAT, "presence")
    board.grant(DOC, [ANN, BOB])
    entry = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "viewing"}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, entry))
    assert cat.frames == []
    shared = {"_id": DOC, "access": [ANN, BOB, CAT]}
    deliver(router, board, Change("t2", "documents", "update", DOC, {"_id": DOC, "access": [ANN, BOB]}, shared))
    assert [f["data"]["viewing"] for f in cat.frames] == [[{"id": str(BOB), "name": "Bob"}]]
    deliver(router, board, Change("t3", "documents", "update", DOC, shared, shared))  # nothing new: no frame
    assert len(cat.frames) == 1


def test_presence_that_changes_state_and_leaves_still_reaches_the_documents_readers() -> None:
    router, board = Router(), Board()
    ann = subscribe(router, ANN, "presence")
    board.grant(DOC, [ANN, BOB])
    viewing = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "viewing"}
    editing = {**viewing, "state": "editing"}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, viewing))
    deliver(router, board, Change("t2", "presence", "update", "c1:d", viewing, editing))
    deliver(router, board, Change("t3", "presence", "delete", "c1:d", editing, None))
    bob = [{"id": str(BOB), "name": "Bob"}]
    assert [(f["data"]["viewing"], f["data"]["editing"]) for f in ann.frames] == [(bob, []), ([], bob), ([], [])]
    assert board.access == {}  # nobody on it: its readers are forgotten


def test_a_presence_record_moved_to_another_document_leaves_the_first() -> None:
    router, board = Router(), Board()
    ann = subscribe(router, ANN, "presence")
    board.grant(DOC, [ANN])
    board.grant(OTHER, [ANN])  # what the hub reads before the record arrives on OTHER
    entry = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "viewing"}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, entry))
    moved = {**entry, "document": OTHER}  # an operator's $set in the shell
    deliver(router, board, Change("t2", "presence", "update", "c1:d", entry, moved))
    deliver(router, board, Change("t3", "presence", "delete", "c1:d", moved, None))
    bob = [{"id": str(BOB), "name": "Bob"}]
    assert [(f["id"], f["data"]["viewing"]) for f in ann.frames] == [
        (str(DOC), bob), (str(DOC), []), (str(OTHER), bob), (str(OTHER), []),
    ]  # fmt: skip
    assert board.by_document == {} and board.entries == {}


def test_a_presence_record_cannot_widen_who_sees_it() -> None:
    router, board = Router(), Board()
    cat = subscribe(router, CAT, "presence")
    board.grant(DOC, [ANN, BOB])
    stale = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "viewing", "access": [ANN, BOB, CAT]}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, stale))
    assert cat.frames == []


def test_presence_on_a_document_nobody_granted_reaches_nobody() -> None:
    router, board = Router(), Board()
    ann = subscribe(router, ANN, "presence")
    entry = {"_id": "c1:d", "document": DOC, "user": ANN, "name": "Ann", "state": "viewing"}
    deliver(router, board, Change("t1", "presence", "insert", "c1:d", None, entry))
    assert ann.frames == []


def test_a_change_a_stream_cannot_read_is_skipped_for_that_stream_and_reported() -> None:
    skipped: list[tuple[str, str]] = []
    router, board = Router(on_error=lambda where, change, error: skipped.append((where, change.token))), Board()
    ann = subscribe(router, ANN)
    hand_made = {"_id": DOC, "title": "t", "owner": {"_id": ANN, "name": "o"}, "access": [ANN]}  # no version...
    deliver(router, board, Change("t1", "documents", "insert", DOC, None, hand_made))
    deliver(router, board, change("update", document(ANN), document(ANN, version=2), token="t2"))
    assert skipped == [("documents", "t1")]
    assert [(f["op"], f["cursor"]) for f in ann.frames] == [("update", "t2")]  # the stream went on


def test_without_an_error_handler_the_router_raises_what_it_cannot_read() -> None:
    router = Router()
    subscribe(router, ANN)
    with pytest.raises(KeyError):
        router.route(Change("t1", "documents", "insert", DOC, None, {"_id": DOC, "access": [ANN]}), Board())


def test_the_board_loads_around_records_it_cannot_read() -> None:
    board = Board()
    good = {"_id": "c1:d", "document": DOC, "user": BOB, "name": "Bob", "state": "viewing"}
    bad = [
        {"_id": "c2:d", "document": DOC, "user": BOB},
        {"_id": "c3:d", "document": [1], "user": BOB, "name": "B", "state": "viewing"},
        {"_id": "c4:d", "document": DOC, "user": "x", "name": 5, "state": "editing"},
    ]
    skipped = board.load([{"_id": "a", "user": ANN}, {"_id": "b"}], [good, *bad], {DOC: {ANN, BOB}})
    assert skipped == [("connections", "b"), ("presence", "c2:d"), ("presence", "c3:d"), ("presence", "c4:d")]
    assert board.count == 1 and board.summary(DOC) == ([{"id": str(BOB), "name": "Bob"}], [])
    assert set(board.entries) == {"c1:d"}


def test_state_on_subscribe_shows_only_documents_the_caller_can_read() -> None:
    board = Board()
    for doc_id, readers in ((DOC, [ANN, BOB]), (OTHER, [CAT])):
        board.grant(doc_id, readers)
        entry = {"_id": f"c:{doc_id}", "document": doc_id, "user": readers[-1], "name": "X", "state": "viewing"}
        board.apply(Change("t", "presence", "insert", entry["_id"], None, entry))
    frames = [json.loads(f) for f in routing.state(Subscription("p", "presence", ANN, None, Sink()), board, "82CC")]
    assert [(f["id"], f["cursor"]) for f in frames] == [(str(DOC), "82CC")]
    online = routing.state(Subscription("o", "online", ANN, None, Sink()), board, "82CC")
    assert json.loads(online[0])["data"] == {"count": 0}


def test_a_subscription_ended_by_the_server_frees_its_id_on_the_connection() -> None:
    from service.budget import WriteBudget
    from service.config import Settings
    from service.realtime.hub import Hub
    from service.realtime.session import Session

    settings = Settings.from_env({})
    hub = Hub(None, settings)  # type: ignore[arg-type]  # no I/O happens here
    out = Outbox()
    connection = Session(out, hub, None, None, None, settings, WriteBudget(settings.write_budget))  # type: ignore[arg-type]
    sub = Subscription("s", "contacts", ANN, None, connection)
    connection.subs["s"] = sub
    hub._register(sub)
    hub._expire_all()  # what the hub does when its own history is lost
    assert "s" not in connection.subs and not hub.subscriptions
    assert json.loads(out.frames[0]) == {
        "type": "error", "id": "s", "code": "cursor_expired", "message": CursorExpired.default_message,
    }  # fmt: skip


class Outbox:
    """Where a session's frames would go to its socket."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def push(self, frame: str) -> bool:
        self.frames.append(frame)
        return True


def test_subscribers_that_narrow_an_event_share_one_frame_per_projection() -> None:
    router, board = Router(), Board()
    sinks = [Sink() for _ in range(4)]
    fields = [
        projection("documents", ["title"]),
        projection("documents", ["title"]),
        None,
        projection("documents", ["version"]),
    ]
    subs = [Subscription("d", "documents", reader, DOC, sink, f)
            for reader, sink, f in zip((ANN, BOB, CAT, ANN), sinks, fields, strict=True)]  # fmt: skip
    for sub in subs:
        router.add(sub)
    before, after = document(ANN, BOB, CAT), document(ANN, BOB, CAT, version=2)
    out = router.route(Change("t1", "documents", "update", DOC, before, after), board)
    frames = {sub.user if sub.fields != projection("documents", ["version"]) else "v": frame for sub, frame in out}
    assert frames[ANN] is frames[BOB]  # same id, same fields: one str, so its bytes are built once
    assert json.loads(frames[ANN])["data"] == {"id": str(DOC), "title": "t"}
    assert json.loads(frames["v"])["data"] == {"id": str(DOC), "version": 2}
    assert "collaborators" in json.loads(frames[CAT])["data"]


def test_many_projections_of_one_event_shape_the_document_at_most_twice() -> None:
    shaped: list[str] = []

    def whole(doc: dict[str, Any]) -> dict[str, Any]:
        shaped.append("whole")
        return document_out(doc)

    def narrow(doc: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
        shaped.append("narrow")
        return document_out(doc, roster=False)

    stream = streams.Stream("documents", frozenset({"documents"}), streams.readers_rule(streams.access, whole, narrow))
    router = Router({"documents": stream})
    names = sorted(DocumentOut.model_fields)
    projections = [frozenset({"id", a, b}) for a in names for b in names if a < b]
    sinks = []
    for fields in projections:
        sinks.append(Sink())
        router.add(Subscription("d", "documents", BOB, DOC, sinks[-1], fields))
    deliver(router, Board(), change("update", document(ANN, BOB), document(ANN, BOB, version=2)))
    assert sorted(shaped) == ["narrow", "whole"]
    shown = document_out(document(ANN, BOB, version=2))
    for sink, fields in zip(sinks, projections, strict=True):
        assert sink.frames[0]["data"] == {name: value for name, value in shown.items() if name in fields}


def test_a_reader_that_leaves_the_roster_out_gets_its_events_when_the_roster_cannot_be_shown() -> None:
    errors: list[str] = []
    router = Router(on_error=lambda where, change, error: errors.append(where))
    whole, narrow = Sink(), Sink()
    router.add(Subscription("w", "documents", ANN, DOC, whole))
    router.add(Subscription("n", "documents", BOB, DOC, narrow, frozenset({"id", "title"})))
    broken = document(ANN, BOB, CAT, version=2)
    broken["collaborators"].append({"_id": "not an id", "role": "king"})  # written in the shell
    deliver(router, Board(), Change("t1", "documents", "update", DOC, document(ANN, BOB, CAT), broken))
    assert whole.frames == [] and errors == ["documents"]
    assert narrow.frames[0]["data"] == {"id": str(DOC), "title": "t"}
    gone = {**broken, "access": [ANN, CAT]}
    deliver(router, Board(), Change("t2", "documents", "update", DOC, broken, gone))
    assert (narrow.frames[-1]["op"], narrow.frames[-1]["data"]) == ("leave", None)


def test_id_is_always_part_of_a_projection() -> None:
    assert projection("documents", ["title"]) == projection("documents", ["id", "title"])
