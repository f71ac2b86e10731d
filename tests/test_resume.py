"""Resume: a client that comes back with its last cursor gets exactly what it missed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from bson import ObjectId

from .feed import Feed, cursor_after_a_write
from .harness import Account, Server


def test_resuming_replays_exactly_the_missed_events_in_order(server, signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    missed = [ann.post("/contacts", json={"name": f"missed {i}"}).json()["id"] for i in range(5)]
    with Feed(server, ann) as feed:
        replayed = feed.subscribe("c", "contacts", since=cursor)
        assert [e["id"] for e in replayed] == missed
        assert all(e["op"] == "insert" and e["sub"] == "c" for e in replayed)
        live = ann.post("/contacts", json={"name": "live"}).json()
        assert feed.event("c")["id"] == live["id"]


def test_a_client_that_saw_no_event_resumes_from_the_cursor_in_subscribed(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        feed.send(type="subscribe", id="c", stream="contacts")
        cursor = feed.expect("subscribed", id="c")["cursor"]
    missed = ann.post("/contacts", json={"name": "while away"}).json()
    with Feed(server, ann) as feed:
        assert [e["id"] for e in feed.subscribe("c", "contacts", since=cursor)] == [missed["id"]]


def test_a_replay_carries_only_what_the_subscription_may_see(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "shared for a while"}).json()
    with Feed(server, bob) as feed:
        feed.subscribe("d", "documents")
        own = bob.post("/documents", json={"title": "bob's"}).json()
        cursor = feed.event("d")["cursor"]
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    ann.patch(f"/documents/{doc['id']}", json={"body": "while shared"})
    ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}")
    ann.patch(f"/documents/{doc['id']}", json={"body": "after unshare: not for bob"})
    ann.post("/documents", json={"title": "never bob's"})
    bob.patch(f"/documents/{own['id']}", json={"body": "bob again"})
    with Feed(server, bob) as feed:
        replayed = feed.subscribe("d", "documents", since=cursor)
    assert [(e["op"], e["id"]) for e in replayed] == [
        ("enter", doc["id"]),
        ("update", doc["id"]),
        ("leave", doc["id"]),
        ("update", own["id"]),
    ]
    assert replayed[1]["data"]["body"] == "while shared" and replayed[2]["data"] is None


def test_events_committed_during_the_replay_arrive_once_with_no_gap(server, signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    written = [ann.post("/contacts", json={"name": f"before {i}"}).json()["id"] for i in range(100)]
    during: list[str] = []
    started = threading.Event()

    def keep_writing() -> None:
        started.set()
        for i in range(60):
            during.append(ann.post("/contacts", json={"name": f"during {i}"}).json()["id"])

    writer = threading.Thread(target=keep_writing)
    with Feed(server, ann) as feed:
        writer.start()
        started.wait()
        received = [e["id"] for e in feed.subscribe("c", "contacts", since=cursor)]
        writer.join()
        expected = written + during
        while len(received) < len(expected):
            received.append(feed.event("c")["id"])
        assert received == expected
        last = ann.post("/contacts", json={"name": "last"}).json()
        assert feed.event("c")["id"] == last["id"]  # and nothing extra came before it


def test_a_cursor_the_oplog_no_longer_holds_is_cursor_expired(server, signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    with Feed(server, ann) as feed:
        ancient = cursor[:2] + "00000010" + cursor[10:]  # the same token, from a time before the oplog
        feed.send(type="subscribe", id="old", stream="contacts", since=ancient)
        error = feed.expect("error", id="old")
        assert error["code"] == "cursor_expired"
        feed.send(type="subscribe", id="junk", stream="contacts", since="not a cursor")
        assert feed.expect("error", id="junk")["code"] == "bad_request"
        feed.subscribe("old", "contacts")  # the id is free again: recovery is a plain subscribe


def test_a_cursor_works_across_a_server_restart(server, signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    server.stop()
    server.start()
    missed = ann.post("/contacts", json={"name": "after restart"}).json()
    with Feed(server, ann) as feed:
        assert [e["id"] for e in feed.subscribe("c", "contacts", since=cursor)] == [missed["id"]]


def replay_reads(account) -> float:
    line = next(
        x for x in account.get("/metrics").text.splitlines() if x.startswith("murmuration_replay_changes_read_total")
    )
    return float(line.split()[-1])


def test_a_replay_reads_what_the_subscription_matches_not_every_change_since(server, signup, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    cursor = cursor_after_a_write(server, ann)
    now = datetime.now(UTC)
    db.contacts.insert_many([{"owner": ObjectId(bob.id), "name": f"b{i}", "created_at": now, "updated_at": now}
                             for i in range(300)])  # fmt: skip
    mine = ann.post("/contacts", json={"name": "missed"}).json()
    before = replay_reads(ann)
    with Feed(server, ann) as feed:
        replayed = feed.subscribe("c", "contacts", since=cursor)
    assert [e["id"] for e in replayed] == [mine["id"]]
    assert replay_reads(ann) - before <= 3  # the cursor's own event and Ann's contact, not Bob's 300


def test_a_replay_of_one_document_carries_that_document_only(server, signup) -> None:
    ann = signup("Ann")
    watched = ann.post("/documents", json={"title": "watched"}).json()
    other = ann.post("/documents", json={"title": "other"}).json()
    cursor = cursor_after_a_write(server, ann)
    for i in range(3):
        ann.patch(f"/documents/{other['id']}", json={"abstract": f"other {i}"})
        ann.patch(f"/documents/{watched['id']}", json={"abstract": f"watched {i}"})
    with Feed(server, ann) as feed:
        replayed = feed.subscribe("one", "documents", params={"id": watched["id"]}, since=cursor)
    assert [(e["id"], e["data"]["abstract"]) for e in replayed] == [(watched["id"], f"watched {i}") for i in range(3)]


def test_a_replay_ends_without_waiting_for_some_other_write(mongo_url: str, mongo) -> None:
    # A heartbeat every 20 minutes, and nothing else writing: the missed event is the newest write in
    # the database, and the replay's stream would only move past it with the next one (MongoDB's own
    # no-op, 10 s later). The service makes one when a replay waits for it.
    with Server(mongo_url, "t_resume_quiet", env={"PRESENCE_TTL": "3600"}) as quiet:
        ann = Account.register(quiet.url, "Ann")
        cursor = cursor_after_a_write(quiet, ann)
        missed = ann.post("/contacts", json={"name": "the last write"}).json()
        with Feed(quiet, ann) as feed:
            feed.send(type="subscribe", id="c", stream="contacts", since=cursor)
            assert feed.expect("event", timeout=5, sub="c")["id"] == missed["id"]
            feed.expect("subscribed", timeout=5, id="c")
        ann.close()
    mongo.drop_database("t_resume_quiet")
