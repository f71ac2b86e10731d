"""Live co-editing driven by Python clients: pycrdt documents speaking the `doc` stream over /ws."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pycrdt import Doc, Map, Text

from service.coediting.yjs import varint as uint

from .feed import Feed
from .harness import Account, Server, wait_for


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"COEDIT_SAVE_AFTER": "0.5", "COEDIT_KEEP": "1", "COEDIT_COMPACT_AFTER": "10"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Editor:
    """A person typing: a Yjs document of their own, kept in sync over one connection."""

    def __init__(self, server: Server, account: Account, document: str, since: str | None = None) -> None:
        self.doc: Doc[Text] = Doc()
        self.text = self.doc.get("body", type=Text)
        self.document = document
        self.feed = Feed(server, account)
        self.frames = 0
        self.cursor: str | None = None
        self.sync: dict[str, Any] | None = None
        self.open(since)

    def open(self, since: str | None = None) -> None:
        params = {"id": self.document, "vector": b64(self.doc.get_state())}
        replayed = self.feed.subscribe("d", "doc", params, since=since)
        for event in replayed:
            self._apply(event)
        if since is None:
            self._apply(self.feed.expect("event", sub="d"))
        # What this side has and the server lacks (typed offline) goes up.
        if self.sync is not None:
            missing = self.doc.get_update(base64.b64decode(self.sync["vector"]))
            if len(missing) > 2:
                self.send(missing)

    def _apply(self, event: dict[str, Any]) -> dict[str, Any]:
        self.cursor = event.get("cursor") or self.cursor
        if event["op"] == "sync":
            self.sync = event["data"]
        if event["op"] in ("sync", "update"):
            self.doc.apply_update(base64.b64decode(event["data"]["update"]))
        return event

    def type(self, position: int, text: str) -> bytes:
        before = self.doc.get_state()
        self.text.insert(position, text)
        return self.doc.get_update(before)

    def send(self, update: bytes) -> dict[str, Any]:
        self.frames += 1
        frame_id = f"u{self.frames}"
        self.feed.send(type="doc.update", id=frame_id, document=self.document, update=b64(update))
        while True:  # events may come before the answer
            frame = self.feed.recv()
            if frame["type"] == "event":
                self._apply(frame)
            elif frame.get("id") == frame_id:
                return frame

    def burst(self, char: str, count: int) -> None:
        """`count` keystrokes at the end of the text, sent at once (no waiting between them), then
        every answer read: each must be an ack."""
        frames = []
        for _ in range(count):
            self.frames += 1
            frames.append(f"u{self.frames}")
            update = self.type(len(self.text), char)
            self.feed.send(type="doc.update", id=frames[-1], document=self.document, update=b64(update))
        while frames:
            frame = self.feed.recv()
            if frame["type"] == "event":
                self._apply(frame)
            elif frame.get("id") in frames:
                assert frame["type"] == "doc.ack", frame
                frames.remove(frame["id"])

    def keystrokes(self, position: int, text: str) -> None:
        for offset, char in enumerate(text):
            assert self.send(self.type(position + offset, char))["type"] == "doc.ack"

    def catch_up(self, expected: str, timeout: float = 15.0) -> None:
        """Read events until the text is `expected`."""
        deadline_frames = 10_000
        while str(self.text) != expected and deadline_frames:
            frame = self.feed.recv(timeout)
            if frame["type"] == "event" and frame["sub"] == "d":
                self._apply(frame)
            deadline_frames -= 1
        assert str(self.text) == expected

    def close(self) -> None:
        self.feed.close()


def editing(server: Server, signup: Callable[..., Account], body: str) -> tuple[Account, dict[str, Any], Editor]:
    """Ann, a document of hers holding `body`, and her editor open on it."""
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plan", "body": body}).json()
    return ann, doc, Editor(server, ann, doc["id"])


def shared(owner: Account, other: Account, role: str = "editor", body: str = "Hello") -> str:
    doc = owner.post("/documents", json={"title": "Plan", "body": body}).json()
    answer = owner.post(f"/documents/{doc['id']}/collaborators", json={"email": other.email, "role": role})
    assert answer.status_code == 200, answer.text
    return str(doc["id"])


def test_two_editors_typing_at_once_end_with_one_text_holding_every_keystroke(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    first, second = Editor(server, ann, document), Editor(server, bob, document)
    assert str(first.text) == str(second.text) == "Hello"
    ann_update = first.type(5, " Ann")  # both type at the end before seeing the other
    bob_update = second.type(5, " Bob")
    assert first.send(ann_update)["type"] == "doc.ack" and second.send(bob_update)["type"] == "doc.ack"
    wait_for(lambda: ann.get(f"/documents/{document}").json()["body"] in ("Hello Ann Bob", "Hello Bob Ann"))
    final = ann.get(f"/documents/{document}").json()["body"]
    first.catch_up(final)
    second.catch_up(final)
    first.close()
    second.close()


def test_a_viewer_cannot_change_the_text(server, signup, db) -> None:
    ann, vic = signup("Ann"), signup("Vic")
    document = shared(ann, vic, role="viewer")
    viewer = Editor(server, vic, document)
    assert viewer.sync is not None and viewer.sync["role"] == "viewer"
    refused = viewer.send(viewer.type(0, "X"))
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert ann.get(f"/documents/{document}").json()["body"] == "Hello"
    assert not db.doc_updates.find_one({"author": ObjectId(vic.id)})
    viewer.close()


def test_a_malformed_update_is_refused_and_never_stored(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "Hello")
    stored = db.doc_updates.count_documents({})
    other: Doc[Map] = Doc()
    other.get("settings", type=Map)["x"] = 1
    for bad in (b"\x00garbage", other.get_update(), b"\x01\x01\x05\x63\x04"):
        answer = editor.send(bad)
        assert (answer["type"], answer["code"]) == ("error", "bad_request"), answer
    editor.feed.send(type="doc.update", id="x", document=doc["id"], update="***")
    assert editor.feed.expect("error", id="x")["code"] == "bad_request"
    assert db.doc_updates.count_documents({}) == stored
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "Hello"
    editor.close()


def test_an_update_sent_again_changes_nothing_twice(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "Hi")
    update = editor.type(2, "!")
    first = editor.send(update)
    again = editor.send(update)
    assert isinstance(first["seq"], int) and again["type"] == "doc.ack" and again["seq"] is None
    assert db.doc_updates.count_documents({"document": ObjectId(doc["id"])}) == first["seq"]
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "Hi!"
    editor.close()


def test_a_deletion_sent_again_is_not_stored_again(server, signup, db) -> None:
    _, doc, editor = editing(server, signup, "Hi!")
    before = editor.doc.get_state()
    del editor.text[2:3]
    deletion = editor.doc.get_update(before)
    first = editor.send(deletion)
    again = [editor.send(deletion) for _ in range(3)]
    assert isinstance(first["seq"], int) and all(a["type"] == "doc.ack" and a["seq"] is None for a in again), again
    assert db.doc_updates.count_documents({"document": ObjectId(doc["id"])}) == first["seq"]
    editor.close()


def test_an_update_that_refers_to_itself_is_refused_and_never_stored(server, signup, db) -> None:
    _, doc, editor = editing(server, signup, "Hi")
    client = editor.doc.client_id
    # One string struct of the editor's own client at clock 0, its origin itself: the engine would
    # hold it pending for good (acknowledged, stored, never shown).
    looped = uint(1) + uint(1) + uint(client) + uint(0) + bytes([4 | 0x80]) + uint(client) + uint(0) + uint(1) + b"x"
    answer = editor.send(looped + uint(0))
    assert answer["type"] == "error" and answer["code"] == "bad_request", answer
    assert db.doc_updates.count_documents({"document": ObjectId(doc["id"])}) == 1  # the first text alone
    assert editor.send(editor.type(2, "!"))["type"] == "doc.ack"  # and the editor goes on typing
    editor.close()


@pytest.mark.parametrize("vector", ["////", "BQ==", "AQE=", "not base64!"])
def test_a_state_vector_that_is_not_one_is_a_bad_request(server, signup, vector: str) -> None:
    ann, doc, editor = editing(server, signup, "Hi")
    with Feed(server, ann) as feed:
        feed.send(type="subscribe", id="v", stream="doc", params={"id": doc["id"], "vector": vector})
        feed.expect("error", id="v", code="bad_request")
    editor.close()


def test_a_client_that_comes_back_with_its_cursor_gets_what_it_missed(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob, body="")
    first, second = Editor(server, ann, document), Editor(server, bob, document)
    first.keystrokes(0, "ab")
    second.catch_up("ab")
    cursor = second.cursor
    second.close()
    first.keystrokes(2, "cd")
    back = Editor.__new__(Editor)
    back.doc, back.text, back.document = second.doc, second.text, document
    back.feed, back.frames, back.cursor, back.sync = Feed(server, bob), 0, None, None
    back.open(since=cursor)
    assert str(back.text) == "abcd"
    first.close()
    back.close()


def test_typing_offline_merges_when_the_connection_returns(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob, body="one two")
    first, second = Editor(server, ann, document), Editor(server, bob, document)
    second.close()
    second.type(0, "zero ")  # offline
    first.keystrokes(7, " three")
    second.feed, second.sync = Feed(server, bob), None
    second.open()
    assert str(second.text) == "zero one two three"
    first.catch_up("zero one two three")
    assert ann.get(f"/documents/{document}").json()["body"] == "zero one two three"
    first.close()
    second.close()


def test_a_rest_patch_during_live_typing_merges(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob, body="middle")
    editor = Editor(server, bob, document)
    read = ann.get(f"/documents/{document}")
    editor.keystrokes(0, ">> ")  # typed after the REST client read the text
    answer = ann.patch(f"/documents/{document}", json={"body": "middle <<"}, headers={"If-Match": read.headers["ETag"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"] == ">> middle <<"
    editor.catch_up(">> middle <<")
    editor.close()


def test_typing_makes_a_save_point_after_a_quiet_moment(server, signup) -> None:
    ann, doc, editor = editing(server, signup, "v1")
    editor.keystrokes(2, "+")
    typing = ann.get(f"/documents/{doc['id']}")
    assert typing.json()["version"] == 1 and typing.headers["ETag"].startswith('"1.')
    wait_for(lambda: ann.get(f"/documents/{doc['id']}").json()["version"] == 2)
    saved = ann.get(f"/documents/{doc['id']}")
    assert saved.headers["ETag"] == '"2"' and saved.json()["body"] == "v1+"
    revisions = ann.get(f"/documents/{doc['id']}/revisions").json()["items"]
    assert [(r["version"], r["body"]) for r in revisions] == [(1, "v1")]
    editor.close()


def test_compaction_leaves_the_text_and_a_new_editor_syncs_to_it(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "")
    editor.keystrokes(0, "compaction keeps every character")
    oid = ObjectId(doc["id"])
    # Compacted: the snapshot's state is there (its checkpoint, the head, may come first).
    wait_for(lambda: db.doc_snapshots.find_one({"_id": oid, "state": {"$exists": True}}) is not None, timeout=30)
    assert db.doc_updates.count_documents({"document": oid}) < 33
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "compaction keeps every character"
    fresh = Editor(server, ann, doc["id"])
    assert str(fresh.text) == "compaction keeps every character"
    editor.keystrokes(len("compaction keeps every character"), "!")
    fresh.catch_up("compaction keeps every character!")
    editor.close()
    fresh.close()


def test_awareness_is_relayed_under_the_account_name_and_removed_on_close(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    first, second = Editor(server, ann, document), Editor(server, bob, document)
    state = b'{"user":{"name":"Mallory","color":"#ff0000"},"cursor":null}'
    update = bytes([1]) + bytes([42, 1, len(state)]) + state
    second.feed.send(type="doc.awareness", document=document, update=b64(update))

    def awareness() -> dict[str, Any]:
        while True:
            frame = first.feed.recv()
            if frame["type"] == "event" and frame["op"] == "awareness":
                return frame

    seen = base64.b64decode(awareness()["data"]["update"])
    assert b'"name":"Bob"' in seen and b"Mallory" not in seen and b"#ff0000" in seen
    second.close()
    removed = base64.b64decode(awareness()["data"]["update"])
    assert removed.endswith(b"null")
    first.close()


def test_a_body_set_in_the_shell_is_folded_into_the_live_text(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "typed")
    editor.keystrokes(5, "!")
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$set": {"body": "fixed by hand"}})
    editor.catch_up("fixed by hand")
    editor.keystrokes(0, ">")
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == ">fixed by hand"
    editor.close()


def test_losing_access_ends_the_doc_subscription(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    editor = Editor(server, bob, document)
    ann.delete(f"/documents/{document}/collaborators/{bob.id}")
    while True:
        frame = editor.feed.recv()
        if frame["type"] == "event" and frame["op"] == "leave":
            break
    refused = editor.send(editor.type(0, "x"))
    assert refused["type"] == "error" and refused["code"] == "not_found"
    editor.close()


def test_editors_on_two_instances_and_a_killed_instance_loses_no_acknowledged_update(
    server, signup, mongo_url: str
) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob, body="")
    other = Server(mongo_url, server.db_name, env=server.env).start()
    try:
        first = Editor(server, ann, document)
        second = Editor(other, bob, document)
        first.keystrokes(0, "left ")
        second.catch_up("left ")
        second.keystrokes(5, "right")
        first.catch_up("left right")
        other.kill()  # right after its acks: what it acknowledged is in MongoDB
    finally:
        other.stop()
    assert ann.get(f"/documents/{document}").json()["body"] == "left right"
    first.close()


def reruns(server: Server) -> dict[str, float]:
    """The server's co-editing writes run again after a write conflict, by how (from /metrics)."""
    found = {"rewound": 0.0, "reloaded": 0.0}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("murmuration_coedit_write_reruns_total{"):
            found[line.split('how="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return found


def test_two_instances_writing_at_once_conflict_and_keep_every_keystroke_once(
    server, signup, mongo_url: str, db
) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob, body="")
    # Bursts as fast as the sockets go: the per-connection limits are raised for this pair.
    env = {**server.env, "COEDIT_RATE": "10000", "WS_FRAME_RATE": "10000"}
    left, right = Server(mongo_url, server.db_name, env=env).start(), Server(mongo_url, server.db_name, env=env).start()
    try:
        first, second = Editor(left, ann, document), Editor(right, bob, document)
        rounds, joined = 0, []
        # The two instances' transactions both write the document: until one of them had to run
        # again (a write conflict), type more at once on both (a bounded number of rounds). Someone
        # opens the document meanwhile: their sync is not taken from a write half-way.
        while sum(reruns(left).values()) + sum(reruns(right).values()) == 0 and rounds < 40:
            rounds += 1
            sending = threading.Thread(target=first.burst, args=("a", 10))
            sending.start()
            if len(joined) < 5:
                opening = threading.Thread(target=lambda: joined.append(Editor(left, bob, document)))
                opening.start()
            second.burst("b", 10)
            sending.join()
            opening.join()
        assert sum(reruns(left).values()) + sum(reruns(right).values()) > 0, "no write conflict in 40 rounds"
        assert reruns(left)["rewound"] + reruns(right)["rewound"] > 0  # from the base, not the whole log
        typed = "a" * 10 * rounds + "b" * 10 * rounds
        stored = wait_for(lambda: (body := ann.get(f"/documents/{document}").json()["body"]) and
                          sorted(body) == sorted(typed) and body)  # fmt: skip
        for editor in (first, second, *joined):
            editor.catch_up(stored)
            editor.close()
        log = list(db.doc_updates.find({"document": ObjectId(document)}).sort("seq", 1))
        seqs = [entry["seq"] for entry in log]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no hole, no seq twice
        assert len({bytes(entry["update"]) for entry in log}) == len(log)  # no update twice
    finally:
        left.stop()
        right.stop()


def test_a_document_with_a_long_log_is_opened_from_its_latest_checkpoint(server, mongo_url: str, mongo) -> None:
    # Updates kept ten minutes, a checkpoint every 10: the log is long, the checkpoint recent. A
    # database of its own: the module's server compacts every second.
    env = {**server.env, "COEDIT_KEEP": "600", "COEDIT_COMPACT_AFTER": "10"}
    name = f"{server.db_name}_checkpoint"
    typing = Server(mongo_url, name, env=env).start()
    try:
        ann, bob = Account.register(typing.url, "Ann"), Account.register(typing.url, "Bob")
        document = shared(ann, bob, body="")
        editor = Editor(typing, ann, document)
        editor.keystrokes(0, "checkpoints keep opening")
        db, oid = mongo[name], ObjectId(document)
        kept = wait_for(lambda: db.doc_snapshots.find_one({"_id": oid, "head_seq": {"$gte": 10}}), what="a checkpoint")
        editor.keystrokes(len(editor.text), " cheap")  # after the checkpoint: read from the log
        editor.close()
    finally:
        typing.stop()
    assert "state" not in kept  # nothing compacted: the log is all there
    # What the checkpoint holds is not read from the log again: without those entries, a new
    # instance shows the whole text at once, and has nothing to repair from the body.
    db.doc_updates.delete_many({"document": oid, "seq": {"$lte": kept["head_seq"]}})
    opening = Server(mongo_url, name, env=env).start()
    try:
        fresh = Editor(opening, bob, document)
        assert str(fresh.text) == "checkpoints keep opening cheap"
        fresh.keystrokes(len(fresh.text), "!")
        fresh.close()
        assert bob.get(f"{opening.url}/documents/{document}").json()["body"] == "checkpoints keep opening cheap!"
        assert db.doc_updates.count_documents({"document": oid, "author": None}) == 0
    finally:
        opening.stop()
        mongo.drop_database(name)


def test_an_etag_from_before_the_log_began_is_412_not_a_second_copy(server, signup) -> None:
    ann, doc, editor = editing(server, signup, "Hello")
    editor.keystrokes(5, "!")
    answer = ann.patch(f"/documents/{doc['id']}", json={"body": "Hello! world"}, headers={"If-Match": '"1.0"'})
    assert answer.status_code == 412
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "Hello!"
    editor.close()


def test_a_body_removed_in_the_shell_is_not_taken_for_an_empty_text(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "important text")
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$unset": {"body": ""}})
    editor.keystrokes(0, ">")
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == ">important text"
    editor.close()


def test_deeply_nested_awareness_is_a_bad_request(server, signup) -> None:
    _, doc, editor = editing(server, signup, "x")
    state = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    update = bytes([1, 7, 1]) + bytes([0x80 | (len(state) & 0x7F), len(state) >> 7]) + state
    editor.feed.send(type="doc.awareness", id="a", document=doc["id"], update=b64(update))
    assert editor.feed.expect("error", id="a")["code"] == "bad_request"
    editor.close()


def test_a_connection_cannot_speak_for_another_persons_awareness_client(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    first, second = Editor(server, ann, document), Editor(server, bob, document)
    state = b'{"user":{"name":"Ann"}}'
    first.feed.send(type="doc.awareness", document=document, update=b64(bytes([1, 77, 1, len(state)]) + state))
    next_frame(second, lambda frame: frame["type"] == "event" and frame["op"] == "awareness")  # Ann's is stored
    removal = bytes([1, 77, 5, 4]) + b"null"
    second.feed.send(type="doc.awareness", id="gone", document=document, update=b64(removal))
    assert next_frame(second, lambda frame: frame.get("id") == "gone")["code"] == "bad_request"
    takeover = bytes([1, 77, 9, len(state)]) + state
    second.feed.send(type="doc.awareness", id="take", document=document, update=b64(takeover))
    assert next_frame(second, lambda frame: frame.get("id") == "take")["code"] == "forbidden"
    first.close()
    second.close()


def next_frame(editor: Editor, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The next frame `wanted` accepts, the others read past (each read has its own deadline)."""
    while True:
        frame = editor.feed.recv()
        if wanted(frame):
            return frame


def test_a_live_field_written_by_hand_does_not_stop_typing(server, signup, db) -> None:
    ann, doc, editor = editing(server, signup, "ab")
    editor.keystrokes(2, "c")
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$set": {"live": "garbage"}})
    editor.keystrokes(3, "d")
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "abcd"
    editor.close()


def test_a_rest_merge_past_the_text_limit_is_refused_and_changes_nothing(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plan", "body": ""}).json()
    read = ann.get(f"/documents/{doc['id']}")
    editor = Editor(server, ann, doc["id"])
    editor.keystrokes(0, "typed live")
    big = "y" * 999_995
    answer = ann.patch(f"/documents/{doc['id']}", json={"body": big}, headers={"If-Match": read.headers["ETag"]})
    assert answer.status_code == 422, answer.text
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "typed live"
    editor.keystrokes(10, "!")
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "typed live!"
    editor.close()


def test_an_instance_that_reads_a_log_with_an_entry_deleted_by_hand_shows_the_stored_text(
    server, signup, db, mongo_url: str
) -> None:
    ann, doc, editor = editing(server, signup, "")
    editor.keystrokes(0, "abcdef")
    editor.close()
    db.doc_updates.delete_one({"document": ObjectId(doc["id"]), "seq": 3})
    with Server(mongo_url, server.db_name, env=server.env) as other:
        fresh = Editor(other, ann, doc["id"])
        fresh.catch_up("abcdef")  # the sync lacks the deleted entry's text; the body is folded back in
        fresh.close()
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "abcdef"


def test_an_update_building_on_an_entry_deleted_by_hand_is_refused_not_acknowledged_and_lost(
    server, signup, db
) -> None:
    ann, doc, editor = editing(server, signup, "")
    editor.keystrokes(0, "abc")
    watching = Feed(server, ann)
    watching.subscribe("w", "documents", {})
    last = db.doc_updates.find_one({"document": ObjectId(doc["id"])}, sort=[("seq", -1)])
    db.doc_updates.delete_one({"_id": last["_id"]})  # the "c"
    # A change after the deletion, seen by the same instance: it has read the deletion too.
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$set": {"title": "Plan, again"}})
    wait_for(lambda: watching.recv()["type"] == "event", what="the title's event")
    # "d" after "c": the instance no longer vouches for "c", which no instance reading the log has.
    answer = editor.send(editor.type(3, "d"))
    assert answer["type"] == "error" and "sync first" in answer["message"], answer
    watching.close()
    editor.close()


def test_a_log_deleted_by_hand_starts_again_from_the_body_once(server, signup, db, mongo_url: str) -> None:
    ann, doc, editor = editing(server, signup, "Hello")
    editor.keystrokes(5, " world")
    document = ObjectId(doc["id"])
    db.doc_updates.delete_many({"document": document})  # the operator, in the shell
    editor.close()
    again = Editor(server, ann, doc["id"])  # the text, read again from what is left: the body
    assert str(again.text) == "Hello world"
    assert again.send(again.type(11, "!"))["type"] == "doc.ack"
    with Server(mongo_url, server.db_name, env=server.env) as other:
        newcomer = Editor(other, ann, doc["id"])  # an instance that reads it for the first time
        assert str(newcomer.text) == "Hello world!"
        assert newcomer.send(newcomer.type(12, "?"))["type"] == "doc.ack"
        again.catch_up("Hello world!?")
        # The text started again once after the lost history (seq 7), then the keystrokes. It had the
        # lost first text's ids, and was not logged: the newcomer could not place the keystroke on it
        # (its text was empty), and the instances rewrote each other's text in a loop.
        seqs = [e["seq"] for e in db.doc_updates.find({"document": document}).sort("seq", 1)]
        assert seqs == [8, 9, 10] and ann.get(f"/documents/{doc['id']}").json()["body"] == "Hello world!?", seqs
        newcomer.close()
    again.close()


@pytest.mark.parametrize("head_seq", [2**40, 2**63 - 1])
def test_a_checkpoint_whose_seq_is_past_the_log_is_not_believed(server, signup, db, mongo_url: str, head_seq) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plan", "body": ""}).json()
    oid = ObjectId(doc["id"])
    editor = Editor(server, ann, doc["id"])
    editor.keystrokes(0, "abcdefghijkl")
    wait_for(lambda: db.doc_snapshots.find_one({"_id": oid, "head_seq": {"$gte": 10}}), what="a checkpoint")
    editor.keystrokes(12, "mnop")
    editor.close()
    # Not due (so no keeper writes a head meanwhile), and a head restored from elsewhere.
    db.documents.update_one({"_id": oid}, {"$unset": {"live.compact": ""}})
    db.doc_snapshots.update_one({"_id": oid}, {"$set": {"head_seq": head_seq}})
    with Server(mongo_url, server.db_name, env=server.env) as other:
        fresh = Editor(other, ann, doc["id"])
        assert str(fresh.text) == "abcdefghijklmnop"
        fresh.keystrokes(16, "!")
        fresh.close()
        assert httpx.get(f"{other.url}/documents/{doc['id']}", headers=ann.headers).json()["body"] == (
            "abcdefghijklmnop!"
        )
    assert max(entry["seq"] for entry in db.doc_updates.find({"document": oid})) < 100


def test_documents_the_keeper_cannot_save_are_skipped_and_the_keeper_stays_up(server, signup, db, anon) -> None:
    ann = signup("Ann")
    due = {"seq": 5, "saved": 1, "save_after": datetime(2000, 1, 1, tzinfo=UTC)}
    broken = [  # more than a round's batch: they must not fill every round
        {"title": f"Broken {n}", "owner": {"_id": ObjectId(ann.id), "name": "Ann"}, "access": [ObjectId(ann.id)],
         "collaborators": [], "version": "x", "live": due}
        for n in range(110)
    ]  # fmt: skip
    broken.append({**broken[0], "title": "No version"})
    del broken[-1]["version"]
    db.documents.insert_many(broken, bypass_document_validation=True)
    doc = ann.post("/documents", json={"title": "Plan", "body": "v1"}).json()
    editor = Editor(server, ann, doc["id"])
    editor.keystrokes(2, "+")
    wait_for(lambda: ann.get(f"/documents/{doc['id']}").json()["version"] == 2, timeout=30)
    assert anon.get("/health").json()["tasks"]["coedit-keeper"] == {"state": "running", "restarts": 0}
    editor.close()


def test_a_document_whose_log_cannot_be_compacted_is_left_as_it_is_and_stops_being_due(server, signup, db) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plan", "body": ""}).json()
    oid = ObjectId(doc["id"])
    editor = Editor(server, ann, doc["id"])
    editor.keystrokes(0, "abc")
    db.doc_updates.update_one({"document": oid, "seq": 3}, {"$set": {"update": b"\xff\xfe\x00garbage"}})
    editor.keystrokes(3, "defghijklmnop")
    wait_for(lambda: "compact" not in (db.documents.find_one({"_id": oid}) or {}).get("live", {}), timeout=30)
    assert db.doc_snapshots.find_one({"_id": oid}) is None
    assert ann.get(f"/documents/{doc['id']}").json()["body"] == "abcdefghijklmnop"
    editor.close()


def test_a_typists_awareness_client_id_stays_theirs_while_they_are_away(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    first = Editor(server, ann, document)
    first.keystrokes(5, "!")
    mine = first.doc.client_id
    state = b'{"cursor":1}'
    update = bytes([1]) + uint(mine) + bytes([1, len(state)]) + state
    first.feed.send(type="doc.awareness", document=document, update=b64(update))
    first.close()
    second = Editor(server, bob, document)
    second.feed.send(type="doc.awareness", id="take", document=document, update=b64(update))
    assert next_frame(second, lambda frame: frame.get("id") == "take")["code"] == "forbidden"
    back = Editor(server, ann, document)
    back.feed.send(type="doc.awareness", id="back", document=document, update=b64(update))
    seen = next_frame(second, lambda frame: frame["type"] == "event" and frame["op"] == "awareness")
    assert b'"name":"Ann"' in base64.b64decode(seen["data"]["update"])
    back.close()
    second.close()


def test_an_open_editor_is_on_the_documents_presence_until_it_leaves(server, signup) -> None:
    ann, vic = signup("Ann"), signup("Vic")
    document = shared(ann, vic, role="viewer")
    editor, viewer = Editor(server, ann, document), Editor(server, vic, document)
    people = {"editing": [{"id": ann.id, "name": "Ann"}], "viewing": [{"id": vic.id, "name": "Vic"}]}
    wait_for(lambda: ann.get(f"/documents/{document}/presence").json() == people)
    viewer.feed.send(type="unsubscribe", id="d")
    wait_for(lambda: ann.get(f"/documents/{document}/presence").json() == {**people, "viewing": []})
    editor.close()
    wait_for(lambda: ann.get(f"/documents/{document}/presence").json() == {"editing": [], "viewing": []})
    viewer.close()


def test_deleting_the_document_ends_its_doc_subscriptions(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    document = shared(ann, bob)
    editor = Editor(server, bob, document)
    assert ann.delete(f"/documents/{document}").status_code == 204
    ended = next_frame(editor, lambda frame: frame["type"] == "event")
    assert (ended["op"], ended["id"], ended["data"]) == ("delete", document, None)
    editor.feed.send(type="unsubscribe", id="d")
    assert next_frame(editor, lambda frame: frame["type"] == "error")["code"] == "bad_request"  # it is over
    editor.close()


def test_a_rest_edit_that_sends_the_text_there_is_still_a_new_version(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plan", "body": ""}).json()
    for version in (2, 3, 4):  # the first starts the log; the others change nothing in the text
        answer = ann.patch(f"/documents/{doc['id']}", json={"body": ""})
        assert answer.status_code == 200 and answer.json()["version"] == version, answer.text
