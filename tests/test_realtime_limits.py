"""Protection: slow clients, huge frames, floods and silent connections are cut off, others unharmed."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from bson import ObjectId
from websockets.exceptions import ConnectionClosed

from .feed import Feed
from .harness import wait_for


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    # A large write budget: the slow-reader test saves a 200 KB document 120 times (budgets: test_budget).
    return {"WS_AUTH_TIMEOUT": "1.5", "WS_SEND_QUEUE": "16", "WS_FRAME_RATE": "20", "WS_PER_USER": "4",
            "WRITE_BUDGET": str(1 << 30)}  # fmt: skip


def test_a_connection_that_never_authenticates_is_closed_with_4001(server) -> None:
    with Feed(server) as feed:
        assert feed.closed_with(timeout=20) == 4001


def test_a_frame_over_one_mebibyte_closes_with_1009(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann, max_size=None) as feed:
        try:
            feed.ws.send("x" * (2 * 1024 * 1024))
        except ConnectionClosed as closed:  # the server may refuse before the last byte is out
            assert closed.rcvd is not None and closed.rcvd.code == 1009
            return
        assert feed.closed_with() == 1009


def test_a_flood_of_frames_is_rate_limited_and_the_connection_stays_up(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        for _ in range(150):
            feed.send(type="ping")
        frames = [feed.recv() for _ in range(150)]
        refused = [f for f in frames if f["type"] == "error"]
        assert refused and all(f["code"] == "rate_limited" for f in refused)
        assert 0 < sum(f["type"] == "pong" for f in frames) < 150
        assert feed.ws.ping().wait(10)  # the connection is alive


def test_a_slow_reader_is_cut_off_with_4008_while_a_fast_one_keeps_up(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "big", "body": "x" * 200_000}).json()
    # The slow client reads nothing: its library stops reading the socket after 1 frame.
    with Feed(server, ann, max_queue=1) as slow, Feed(server, ann) as fast:
        slow.subscribe("d", "documents", {"id": doc["id"]})
        fast.subscribe("d", "documents", {"id": doc["id"]})
        edits = 120
        for i in range(edits):
            ann.patch(f"/documents/{doc['id']}", json={"abstract": str(i)})
            assert fast.event("d")["data"]["abstract"] == str(i)
        assert slow.closed_with() == 4008


def test_one_socket_holds_one_subscription_to_the_same_thing(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "once"}).json()
    with Feed(server, ann) as feed:
        feed.subscribe("all", "documents")
        feed.subscribe("one", "documents", {"id": doc["id"]})  # another target: allowed
        for again in ("all-2", "all-3"):
            feed.send(type="subscribe", id=again, stream="documents")
            refused = feed.expect("error", id=again)
            assert refused["code"] == "conflict" and "'all'" in refused["message"]
        feed.send(type="subscribe", id="one-2", stream="documents", params={"id": doc["id"]})
        assert feed.expect("error", id="one-2")["code"] == "conflict"
        ann.patch(f"/documents/{doc['id']}", json={"body": "seen twice, not four times"})
        assert sorted(feed.event()["sub"] for _ in range(2)) == ["all", "one"]
        feed.send(type="ping")
        feed.expect("pong")  # and nothing else came


def replays_under_way(server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return float(next(x for x in text.splitlines() if x.startswith("murmuration_replays_running")).split()[-1])


def test_a_user_runs_at_most_three_replays_at_once(server, signup, db) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as first:
        first.subscribe("c", "contacts")
        ann.post("/contacts", json={"name": "the cursor"})
        cursor = first.event("c")["cursor"]
    now = datetime.now(UTC)
    # 20 MB of backlog: more than loopback's socket buffers hold, so a replay to a client that never
    # reads cannot finish and stays under way.
    notes = "n" * 10_000
    db.contacts.insert_many([{"owner": ObjectId(ann.id), "name": f"c{i}", "notes": notes, "created_at": now,
                              "updated_at": now} for i in range(2000)])  # fmt: skip
    # Clients that never read: each replay fills its socket, then waits for room, and stays under way.
    stuck = [Feed(server, ann, max_queue=1) for _ in range(3)]
    try:
        for feed in stuck:
            feed.send(type="subscribe", id="c", stream="contacts", since=cursor)
        wait_for(lambda: replays_under_way(server) == 3, 30, "three replays under way")
        with Feed(server, ann) as fourth:
            fourth.send(type="subscribe", id="c", stream="contacts", since=cursor)
            refused = fourth.expect("error", id="c")
            assert refused["code"] == "rate_limited" and "at most 3 replays" in refused["message"]
    finally:
        for feed in stuck:
            feed.close()
    with Feed(server, ann) as later:  # the stuck ones are gone: replays are possible again
        assert len(later.subscribe("c", "contacts", since=cursor)) == 2000


def test_a_user_holds_at_most_ws_per_user_connections(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    held = [Feed(server, ann) for _ in range(4)]
    try:
        with Feed(server, ann, header=False) as fifth:
            fifth.send(type="auth", token=ann.token)
            code, reason = fifth.closed(10)
            assert code == 1008 and "at most 4 connections" in reason
        with Feed(server, bob):  # someone else is not affected
            pass
    finally:
        for feed in held:
            feed.close()
    with Feed(server, ann):  # one closed: room again
        pass


def test_a_connection_gets_five_attempts_to_authenticate(server) -> None:
    with Feed(server) as feed:
        for _ in range(5):
            feed.send(type="auth", token="mm_made-up")
            assert feed.expect("error")["code"] == "unauthorized"
        feed.send(type="auth", token="mm_made-up")
        code, reason = feed.closed(10)
        assert code == 4001 and "more than 5 attempts" in reason
