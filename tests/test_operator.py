"""A careless operator in the mongo shell: dates out of Python's range, 9 MB fields, a 16 MB order,
odd ids, dropped collections and databases, moved presence. Nothing stops a stream, a route or a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import DatetimeMS, Decimal128, ObjectId
from pymongo.database import Database

from deploy.local.gateway import GatewayServer

from .feed import Feed, cursor_after_a_write
from .harness import Account, Server, payments_env, wait_for

YEAR_10000 = DatetimeMS(253402300800000 + 86_400_000)  # a valid BSON date Python's datetime cannot hold
NOW = datetime.now(UTC)
NONCE = "fake-valid-nonce"


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    return {**payments_env(gateway), "PRESENCE_TTL": "3"}


def healthy_without_restarts(account: Account) -> dict[str, Any]:
    health = wait_for(lambda: (h := account.get("/health")).status_code == 200 and h.json(), what="/health ok")
    assert all(task["restarts"] == 0 for task in health["tasks"].values()), health
    return health


def still_streams(server: Server, account: Account) -> None:
    with Feed(server, account) as feed:
        feed.subscribe("c", "contacts")
        made = account.post("/contacts", json={"name": "after the operator"}).json()
        assert feed.event("c")["id"] == made["id"]


def test_a_date_python_cannot_hold_is_left_out_not_fatal(server, db: Database[Any], signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    junk = db.contacts.insert_one(
        {"owner": ObjectId(ann.id), "name": "far future", "created_at": YEAR_10000, "updated_at": YEAR_10000}
    ).inserted_id  # fmt: skip  (the validator lets it in)
    db.users.insert_one({"email": "future@example.com", "name": "F", "password": "x", "created_at": YEAR_10000})
    assert ann.get("/contacts").status_code == 200
    assert ann.get(f"/contacts/{junk}").status_code == 409
    login = ann.post("/auth/login", json={"email": "future@example.com", "password": "whatever"})
    assert login.status_code == 401
    doc = ann.post("/documents", json={"title": "t"}).json()
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": "future@example.com", "role": "viewer"})
    assert shared.status_code == 202  # an address with no verified account: a pending invite
    still_streams(server, ann)
    with Feed(server, ann) as feed:  # a replay across it skips it
        assert "far future" not in str(feed.subscribe("c", "contacts", since=cursor))
    healthy_without_restarts(ann)


def test_an_event_over_16_mb_is_put_back_together_and_the_stream_goes_on(server, db: Database[Any], signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    big = db.contacts.insert_one({"owner": ObjectId(ann.id), "name": "big", "created_at": NOW, "updated_at": NOW})
    huge = "n" * (9 << 20)  # before and after images: 18 MB, over MongoDB's 16 MB for one event
    db.contacts.update_one({"_id": big.inserted_id}, {"$set": {"notes": huge}}, bypass_document_validation=True)
    db.contacts.update_one({"_id": big.inserted_id}, {"$set": {"notes": huge + "!"}}, bypass_document_validation=True)
    still_streams(server, ann)
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts", since=cursor)  # across the split events: no error
    assert ann.get(f"/contacts/{big.inserted_id}").status_code == 409  # notes beyond what the API accepts
    healthy_without_restarts(ann)


def test_an_order_grown_near_16_mb_is_failed_and_real_orders_are_still_charged(db: Database[Any], signup) -> None:
    ann = signup("Ann")
    line = {"sku": "tee", "name": "T-shirt", "quantity": 1, "price": "19.99", "total": "19.99"}
    order = {"owner": ObjectId(ann.id), "idempotency_key": "huge", "fingerprint": "f", "status": "pending",
             "amount": "19.99", "currency": "USD", "items": [line], "errors": [], "attempts": 0, "nonce": NONCE,
             "sale_attempted": False, "lease_owner": None, "lease_until": None, "transaction": None,
             "next_attempt_at": NOW - timedelta(hours=1), "created_at": NOW, "updated_at": NOW}  # fmt: skip
    huge = db.orders.insert_one({**order, "padding": "p" * (16 * 1024 * 1024 - 452)}).inserted_id
    real = ann.post("/orders", headers={"Idempotency-Key": "real"},
                    json={"items": [{"sku": "mug", "quantity": 1}], "payment_method_nonce": NONCE})  # fmt: skip
    wait_for(lambda: ann.get(f"/orders/{real.json()['id']}").json()["status"] == "paid", 30, "the real order paid")
    wait_for(lambda: db.orders.find_one({"_id": huge}, {"status": 1})["status"] == "failed", 30, "the huge one failed")
    healthy_without_restarts(ann)


def test_a_paid_order_reset_by_hand_is_settled_once_without_stopping_a_loop(db: Database[Any], signup) -> None:
    ann = signup("Ann")
    paid = ann.post("/orders", headers={"Idempotency-Key": "to-reset"},
                    json={"items": [{"sku": "tee", "quantity": 1}], "payment_method_nonce": NONCE}).json()  # fmt: skip
    wait_for(lambda: ann.get(f"/orders/{paid['id']}").json()["status"] == "paid", 30, "paid")
    db.orders.update_one({"_id": ObjectId(paid["id"])}, {"$set": {"status": "pending"}, "$unset": {"amount": ""}},
                         bypass_document_validation=True)  # fmt: skip
    wait_for(lambda: db.orders.find_one({"_id": ObjectId(paid["id"])})["status"] in ("paid", "failed"), 30, "settled")
    healthy_without_restarts(ann)


def test_odd_ids_do_not_break_paging(db: Database[Any], signup) -> None:
    ann = signup("Ann")
    real = [ann.post("/contacts", json={"name": f"real {i}"}).json()["id"] for i in range(3)]
    for i in range(25):
        dated = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
        db.contacts.insert_one({"_id": dated, "owner": ObjectId(ann.id),
                                "name": "dated", "created_at": NOW, "updated_at": NOW},
                               bypass_document_validation=True)  # fmt: skip
    db.contacts.insert_one({"_id": "a" * 24, "owner": ObjectId(ann.id), "name": "stringy", "created_at": NOW,
                            "updated_at": NOW}, bypass_document_validation=True)  # fmt: skip
    page = ann.get("/contacts", params={"limit": 2}).json()
    rest = ann.get("/contacts", params={"limit": 2, "after": page["next"]}).json()
    assert [c["id"] for c in page["items"] + rest["items"]] == real[::-1]


def test_records_with_odd_ids_in_connections_and_instances_stop_no_task(server, db: Database[Any], signup) -> None:
    ann = signup("Ann")
    for odd in ({"a": 1}, Decimal128("1.5")):
        db.connections.insert_one({"_id": odd, "user": ObjectId(), "instance": "x", "at": NOW},
                                  bypass_document_validation=True)  # fmt: skip
    db.instances.insert_one({"_id": YEAR_10000, "heartbeat_at": YEAR_10000}, bypass_document_validation=True)
    db.connections.insert_one({"_id": "far", "user": ObjectId(), "instance": "x", "at": YEAR_10000})
    later = Server(server.mongo_url, server.db_name).start()  # reads them all at start
    later.stop()
    still_streams(server, ann)
    healthy_without_restarts(ann)


def test_orphaned_presence_and_connections_are_reaped(server, db: Database[Any], signup) -> None:
    ann = signup("Ann")
    db.connections.insert_one({"_id": "orphan-conn", "user": ObjectId(ann.id), "instance": "gone/1/x", "at": NOW})
    wait_for(lambda: db.connections.count_documents({"_id": "orphan-conn"}) == 0, 30, "the orphan reaped")
    healthy_without_restarts(ann)


def test_data_the_update_cannot_apply_to_is_a_409_not_a_503(db: Database[Any], signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "t"}).json()
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$set": {"access": ObjectId(ann.id)}},
                            bypass_document_validation=True)  # fmt: skip
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    assert shared.status_code in (404, 409), shared.text  # never 503 "database unavailable"
    later = NOW + timedelta(hours=1)
    db.throttles.insert_one({"_id": f"login:email:{ann.email}", "failures": None, "expires_at": later},
                            bypass_document_validation=True)  # fmt: skip
    wrong = ann.post("/auth/login", json={"email": ann.email, "password": "not it"})
    assert wrong.status_code == 401, wrong.text


def test_dropped_collections_and_a_dropped_database_are_made_again(server, db: Database[Any], signup) -> None:
    ann = signup("Ann")
    assert ann.get("/auth/me").status_code == 200  # its token is cached now
    db.sessions.drop()
    wait_for(lambda: ann.get("/auth/me").status_code == 401, 10, "the cached token to stop working")
    wait_for(lambda: any("validator" in found["options"] for found in db.command(
             "listCollections", filter={"name": "sessions"})["cursor"]["firstBatch"]),
             10, "the sessions collection made again, with its validator")  # fmt: skip
    db.client.drop_database(server.db_name)
    bob = wait_for(lambda: _registered(server), 30, "registering again after the drop")
    healthy_without_restarts(bob)
    still_streams(server, bob)


def _registered(server: Server) -> Account | None:
    try:
        return Account.register(server.url, "Bob")
    except (AssertionError, httpx.HTTPError):
        return None
