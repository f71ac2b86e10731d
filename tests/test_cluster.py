"""Scale-out on the local cluster: three mongod members, two instances, nginx in front.

Nothing is lost when an instance dies or the replica set loses its primary: subscribers that resume
with their cursors see every committed event exactly once, and payments are charged once.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient
from websockets.exceptions import ConnectionClosed

from deploy.local.cluster import Cluster, Instance
from deploy.local.mongo import free_port

from .feed import Feed
from .harness import ROOT, Account, Server, mail_sink, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    (ROOT / "var").mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="cluster-", dir=ROOT / "var"))
    running = Cluster(
        port=free_port(),
        instance_ports=[free_port(), free_port()],
        mongo_ports=[free_port(), free_port(), free_port()],
        home=home,
        db_name="cluster",
        extra_env={
            "PRESENCE_TTL": "3",
            "BRAINTREE_TIMEOUT": "4",
            "PAYMENT_LEASE": "9",
            "PAYMENT_SETTLE_DELAY": "1",
            "PAYMENT_POLL": "0.2",
            "SMTP_URL": mail_sink().url,
        },
    )
    try:
        yield running.start()
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)


def at(instance: Instance) -> Server:
    """A test handle on a cluster instance (for Feed and URLs)."""
    return Server(mongo_url="", db_name="", port=instance.port)


def via_nginx(cluster: Cluster) -> Server:
    return Server(mongo_url="", db_name="", port=cluster.port)


def test_nginx_spreads_requests_and_names_the_instance(cluster: Cluster) -> None:
    names = {httpx.get(f"{cluster.url}/health").headers["X-Instance"] for _ in range(6)}
    assert names == {"a", "b"}
    assert httpx.get(f"{cluster.url}/nowhere").json()["error"]["code"] == "not_found"
    huge = httpx.post(f"{cluster.url}/auth/login", content=b"x" * (3 * 1024 * 1024))
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


def test_a_subscriber_on_b_gets_writes_made_through_a_nginx_and_the_shell(cluster: Cluster) -> None:
    a, b = cluster.instance("a"), cluster.instance("b")
    ann = Account.register(a.url, "Ann")
    through_nginx = Account(base_url=cluster.url, headers={"Authorization": f"Bearer {ann.token}"})
    with Feed(at(b), ann) as feed:
        feed.subscribe("c", "contacts")
        one = ann.post("/contacts", json={"name": "via a"}).json()["id"]
        two = through_nginx.post("/contacts", json={"name": "via nginx"}).json()["id"]
        with MongoClient(cluster.mongo_url) as shell:
            stamp = datetime.now(UTC)
            row = {"owner": ObjectId(ann.id), "name": "via the shell", "tags": [], "created_at": stamp,
                   "updated_at": stamp}  # fmt: skip
            three = str(shell["cluster"].contacts.insert_one(row).inserted_id)
        assert [feed.event("c")["id"] for _ in range(3)] == [one, two, three]
    with Feed(via_nginx(cluster), ann) as through:
        through.subscribe("c", "contacts")
        four = ann.post("/contacts", json={"name": "seen through nginx"}).json()["id"]
        assert through.event("c")["id"] == four


def test_a_killed_instances_clients_resume_on_the_other_and_its_presence_vanishes(cluster: Cluster) -> None:
    a, b = cluster.instance("a"), cluster.instance("b")
    ann, bob = Account.register(a.url, "Ann"), Account.register(a.url, "Bob")
    doc = ann.post("/documents", json={"title": "live"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    with Feed(at(a), ann) as watcher:
        watcher.subscribe("p", "presence", {"document": doc["id"]})
        watcher.event("p")
        doomed = Feed(at(b), bob)
        doomed.subscribe("d", "documents")
        doomed.send(type="presence", document=doc["id"], state="editing")
        assert watcher.event("p")["data"]["editing"] == [{"id": bob.id, "name": "Bob"}]
        ann.patch(f"/documents/{doc['id']}", json={"body": "1"})
        cursor = doomed.event("d")["cursor"]
        b.kill()
        try:
            missed = [ann.patch(f"/documents/{doc['id']}", json={"body": str(i)}).json()["version"] for i in (2, 3)]
            assert watcher.event("p", timeout=30)["data"]["editing"] == []  # within seconds, not minutes
            with Feed(at(a), bob) as back:
                replayed = back.subscribe("d", "documents", since=cursor)
                assert [e["data"]["version"] for e in replayed] == missed
        finally:
            b.start()


def test_orders_of_a_killed_instance_are_finished_by_the_other_with_one_sale(cluster: Cluster) -> None:
    assert cluster.gateway is not None
    ann = Account.register(cluster.instance("a").url, "Ann")
    httpx.post(f"{cluster.gateway.url}/__emulator/faults", json={"mode": "timeout_after_sale", "delay": 60})
    body = {"items": [{"sku": "tee", "quantity": 1}], "payment_method_nonce": "fake-valid-nonce"}
    placed = ann.post("/orders", json=body, headers={"Idempotency-Key": "cluster-1"}).json()

    def sales() -> list[dict]:
        return [t for t in cluster.gateway.emulator.transactions.values() if t["order_id"] == placed["id"]]

    wait_for(sales, 30, "the sale to reach the gateway")
    with MongoClient(cluster.mongo_url) as shell:
        owner = shell["cluster"].orders.find_one({"_id": ObjectId(placed["id"])})["lease_owner"]
    doomed = cluster.instance(owner.split("/")[0])
    doomed.kill()  # charged at the gateway, not recorded
    survivor = next(i for i in cluster.instances if i is not doomed)
    try:
        client = Account(base_url=survivor.url, headers={"Authorization": f"Bearer {ann.token}"})
        done = wait_for(lambda: (o := client.get(f"/orders/{placed['id']}").json())["status"] == "paid" and o,
                        60, "the other instance to finish the order")  # fmt: skip
        assert len(sales()) == 1 and done["transaction"]["id"] == sales()[0]["id"]
    finally:
        httpx.post(f"{cluster.gateway.url}/__emulator/reset")
        doomed.start()


def test_losing_the_primary_loses_no_event_and_health_recovers(cluster: Cluster) -> None:
    a = cluster.instance("a")
    ann = Account.register(a.url, "Ann")
    writer_client = Account(base_url=cluster.url, headers={"Authorization": f"Bearer {ann.token}"}, timeout=30)
    acknowledged: list[str] = []
    statuses: list[int] = []
    done = threading.Event()

    def write() -> None:
        i = 0
        while not done.is_set():
            try:
                answer = writer_client.post("/contacts", json={"name": f"n{i}"})
                if answer.status_code == 201:
                    acknowledged.append(answer.json()["id"])
            except httpx.HTTPError:
                pass
            i += 1

    def watch_health() -> None:
        while not done.is_set():
            try:
                statuses.append(httpx.get(f"{a.url}/health", timeout=5).status_code)
            except httpx.HTTPError:
                statuses.append(0)
            done.wait(0.2)

    received: list[str] = []
    feed = Feed(at(a), ann)
    feed.subscribe("c", "contacts")
    cursor: str | None = None
    threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=watch_health, daemon=True)]
    for thread in threads:
        thread.start()

    def drain(until: float) -> None:
        nonlocal feed, cursor
        while time.monotonic() < until:
            try:
                event = feed.event("c", timeout=max(0.1, until - time.monotonic()))
            except AssertionError:
                return
            except ConnectionClosed:
                feed = Feed(at(a), ann)
                received.extend(e["id"] for e in feed.subscribe("c", "contacts", since=cursor))
                continue
            received.append(event["id"])
            cursor = event["cursor"]

    try:
        with MongoClient(cluster.mongo_url) as admin:
            drain(time.monotonic() + 2)
            primary = admin.admin.command("hello")["primary"]
            with MongoClient(primary, directConnection=True) as old, contextlib.suppress(Exception):
                old.admin.command("replSetStepDown", 10)  # the primary may drop the connection as it steps down
            drain(time.monotonic() + 8)
            wait_for(lambda: admin.admin.command("hello").get("primary") not in (None, primary), 60, "a new primary")
            new_primary = next(m for m in cluster.members if m.host == admin.admin.command("hello")["primary"])
            # Keep the others from electing at once, so the outage lasts long enough to be seen (15 s).
            for member in cluster.members:
                if member is not new_primary:
                    with MongoClient(member.host, directConnection=True) as secondary:
                        secondary.admin.command("replSetFreeze", 15)
            new_primary.kill()  # outright, mid-traffic
            drain(time.monotonic() + 15)
            wait_for(lambda: statuses and statuses[-1] == 200 and 503 in statuses, 90, "/health degraded, then ok",
                     seen=lambda: f"/health answers seen: {dict(Counter(statuses))}, last {statuses[-5:]}")  # fmt: skip
            done.set()
            for thread in threads:
                thread.join()
            new_primary.start()
            committed = {str(d["_id"]) for d in admin["cluster"].contacts.find({"owner": ObjectId(ann.id)}, {"_id": 1})}
            deadline = time.monotonic() + 60
            while len(received) < len(committed) and time.monotonic() < deadline:
                drain(time.monotonic() + 2)
    finally:
        done.set()  # never leave the writer running, whatever failed
    feed.close()
    assert set(acknowledged) <= committed
    assert len(received) == len(set(received)), "an event arrived twice"
    assert set(received) == committed, f"missing {len(committed - set(received))} committed events"


def test_a_logout_on_one_instance_revokes_the_token_cached_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.instance("a"), cluster.instance("b")
    ann = Account.register(a.url, "Ann")
    on_a = Account(base_url=a.url, headers={"Authorization": f"Bearer {ann.token}"})
    on_b = Account(base_url=b.url, headers={"Authorization": f"Bearer {ann.token}"})
    assert on_a.get("/auth/me").status_code == 200 and on_a.get("/auth/me").status_code == 200  # now cached on a
    assert on_b.post("/auth/logout").status_code == 204
    started = time.monotonic()
    wait_for(lambda: on_a.get("/auth/me").status_code == 401, 5, "instance a to drop the revoked token")
    assert time.monotonic() - started < 5
    other = Account.register(a.url, "Bob")
    on_a_bob = Account(base_url=a.url, headers={"Authorization": f"Bearer {other.token}"})
    assert on_a_bob.get("/auth/me").status_code == 200
    with MongoClient(cluster.mongo_url) as shell:  # an operator revoking every session of a user
        shell["cluster"].sessions.delete_many({"user": ObjectId(other.id)})
    wait_for(lambda: on_a_bob.get("/auth/me").status_code == 401, 5, "a token revoked in the shell to stop working")
