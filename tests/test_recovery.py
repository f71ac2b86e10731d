"""Recovery: MongoDB restarts and crashed instances cost no event and leave no ghost users."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from deploy.local import debian
from deploy.local.mongo import MongoNode, free_port, initiate

from .feed import Feed
from .harness import ROOT, Account, Server, wait_for

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def node() -> Iterator[MongoNode]:
    """A mongod of this module's own, so it can be stopped without harming other tests."""
    (ROOT / "var").mkdir(exist_ok=True)
    own = MongoNode(port=free_port(), dbpath=Path(tempfile.mkdtemp(prefix="mongo-recovery-", dir=ROOT / "var")))
    own.start()
    own.url = initiate([own])  # type: ignore[attr-defined]
    yield own
    own.stop()
    shutil.rmtree(own.dbpath, ignore_errors=True)


@pytest.fixture
def servers(node: MongoNode) -> Iterator[list[Server]]:
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(node.url, "recovery", env={"PRESENCE_TTL": "3", **env}).start()  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        server.stop()


def health(server: Server) -> int:
    try:
        return httpx.get(f"{server.url}/health", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_the_hub_resumes_after_a_mongod_restart_and_loses_nothing(node: MongoNode, servers) -> None:
    server = servers()
    ann = Account.register(server.url, "Ann")
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts")
        before = ann.post("/contacts", json={"name": "before"}).json()
        cursor = feed.event("c")["cursor"]
        assert before["id"]
        node.stop()
        wait_for(lambda: health(server) == 503, timeout=60, what="/health to say degraded")
        assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "degraded"
        down = ann.get("/contacts")  # the token cache is not trusted while the stream is down
        assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
        node.start()
        wait_for(lambda: health(server) == 200, timeout=90, what="/health to come back ok")
        after = [ann.post("/contacts", json={"name": f"after {i}"}).json()["id"] for i in range(3)]
        live = [feed.event("c", timeout=60)["id"] for _ in after]
        assert live == after
    with Feed(server, ann) as again:
        assert [e["id"] for e in again.subscribe("c", "contacts", since=cursor)] == after


def test_a_crashed_instances_users_vanish_within_seconds(servers) -> None:
    crashing, surviving = servers(), servers()
    ann = Account.register(surviving.url, "Ann")
    bob = Account.register(surviving.url, "Bob")
    doc = ann.post("/documents", json={"title": "shared"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    with Feed(surviving, ann) as watcher:
        watcher.subscribe("o", "online")
        count = watcher.event("o")["data"]["count"]
        watcher.subscribe("p", "presence", {"document": doc["id"]})
        watcher.event("p")
        doomed = Feed(crashing, bob)
        doomed.send(type="presence", document=doc["id"], state="editing")
        assert watcher.event("o")["data"]["count"] == count + 1
        assert watcher.event("p")["data"]["editing"] == [{"id": bob.id, "name": "Bob"}]
        crashing.kill()  # no goodbye: SIGKILL
        frames = [watcher.recv(timeout=30), watcher.recv(timeout=30)]
        by_sub = {f["sub"]: f["data"] for f in frames}
        assert by_sub == {"o": {"count": count}, "p": {"document": doc["id"], "viewing": [], "editing": []}}
    assert ann.get(f"/documents/{doc['id']}/presence").json() == {"viewing": [], "editing": []}


def test_sigterm_closes_websockets_with_1001_and_leaves_no_ghosts(servers) -> None:
    import signal
    import time

    leaving, staying = servers(), servers()
    ann = Account.register(staying.url, "Ann")
    bob = Account.register(staying.url, "Bob")
    with Feed(staying, ann) as watcher, Feed(leaving, bob) as doomed:
        watcher.subscribe("o", "online")
        count = watcher.event("o")["data"]["count"]
        while count < 2:  # Bob is on the other instance: his arrival may reach this one a moment later
            count = watcher.event("o")["data"]["count"]
        started = time.monotonic()
        assert leaving.process is not None
        leaving.process.send_signal(signal.SIGTERM)
        assert doomed.closed_with(timeout=20) == 1001  # "going away": reconnect elsewhere with since
        leaving.process.wait(timeout=30)
        assert leaving.process.returncode == 0 and time.monotonic() - started < 20
        # Its records went with it: no waiting for the heartbeat to time out.
        assert watcher.event("o", timeout=5)["data"] == {"count": count - 1}


def test_several_workers_each_run_a_hub_and_every_connection_gets_its_events(servers, node: MongoNode) -> None:
    from pymongo import MongoClient

    server = servers(WORKERS="2")
    with MongoClient(node.url) as client:  # type: ignore[attr-defined]

        def hubs() -> set[int]:
            return {doc["pid"] for doc in client["recovery"].instances.find({"name": f"test-{server.port}"})}

        wait_for(lambda: len(hubs()) == 2, 30, "one hub (and heartbeat) per worker process")
    ann = Account.register(server.url, "Ann")
    feeds = [Feed(server, ann) for _ in range(6)]  # the kernel spreads them over both workers
    try:
        for feed in feeds:
            feed.subscribe("c", "contacts")
        contact = ann.post("/contacts", json={"name": "to all"}).json()
        assert all(feed.event("c")["id"] == contact["id"] for feed in feeds)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "murmuration_websockets_open" in metrics and "murmuration_http_requests_total" in metrics
    finally:
        for feed in feeds:
            feed.close()


def test_an_instance_presumed_dead_while_alive_restores_its_users(servers, node: MongoNode) -> None:
    from pymongo import MongoClient

    server = servers()
    ann, bob = Account.register(server.url, "Ann"), Account.register(server.url, "Bob")
    doc = ann.post("/documents", json={"title": "still here"}).json()
    with Feed(server, ann) as watcher, Feed(server, bob) as alive:
        watcher.subscribe("o", "online")
        assert watcher.event("o")["data"] == {"count": 2}
        alive.send(type="subscribe", id="x", stream="contacts")
        alive.expect("subscribed")
        ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
        alive.send(type="presence", document=doc["id"], state="viewing")
        with MongoClient(node.url) as client:  # type: ignore[attr-defined]
            db = client["recovery"]
            wait_for(lambda: db.presence.count_documents({"user": ObjectId(bob.id)}) == 1, what="bob's presence")
            # What another instance's reaper does to an instance it believes dead:
            ids = [d["_id"] for d in db.instances.find({"name": f"test-{server.port}"})]
            db.presence.delete_many({"instance": {"$in": ids}})
            db.connections.delete_many({"instance": {"$in": ids}})
            db.instances.delete_many({"_id": {"$in": ids}})
            counts = [watcher.event("o")["data"]["count"]]
            while counts[-1] != 2:  # down as the records go, then up as the instance restores them
                counts.append(watcher.event("o", timeout=20)["data"]["count"])
            assert min(counts) < 2
            wait_for(lambda: db.connections.count_documents({"user": ObjectId(bob.id)}) == 1, 20, "bob restored")
            wait_for(lambda: db.presence.count_documents({"user": ObjectId(bob.id)}) == 1, 20, "presence restored")


def test_an_instance_whose_host_clock_runs_15s_behind_is_not_taken_for_dead(servers, node: MongoNode) -> None:
    faketime = Path(debian.ensure("faketime")).parent.parent / "lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    behind = servers(LD_PRELOAD=str(faketime), FAKETIME="-15s", FAKETIME_DONT_FAKE_MONOTONIC="1")
    judge = servers()  # a host with the right time, reaping instances silent for PRESENCE_TTL (3 s)
    bob = Account.register(judge.url, "Bob")
    db = MongoClient(node.url, tz_aware=True)["recovery"]  # type: ignore[attr-defined]
    with Feed(behind, bob):
        me = db.connections.find_one({"user": ObjectId(bob.id)})["instance"]

        # Silent instances, by the database's clock: once the judge has removed one, it has reaped, and
        # the instance behind, beating all along, must not have been removed with it.
        def judge_reaped() -> list[str]:
            if db.instances.count_documents({"_id": {"$regex": "^silent/"}}) == 0:  # the other may reap too
                db.instances.insert_one({"_id": f"silent/{ObjectId()}", "heartbeat_at": datetime.now(UTC) - HOUR})
            return [line for line in judge.log_tail(300).splitlines() if "silent instance" in line]

        reaped = wait_for(judge_reaped, 30, "the judge to reap")
        assert all(me not in line for line in reaped), reaped
        assert "presumed dead" not in behind.log_tail(300)
        assert db.instances.count_documents({"_id": me}) == 1
