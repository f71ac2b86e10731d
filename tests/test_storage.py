"""Nothing an operator writes stops the stream: MongoDB refuses malformed writes, and what gets stored
anyway (validator bypassed, an older version) is read around by every route and every stream."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, WriteError

from deploy.local.gateway import GatewayServer

from .feed import Feed
from .harness import Account, Server, payments_env, wait_for

SEED = 1311
TEE = {"items": [{"sku": "tee", "quantity": 1}], "payment_method_nonce": "fake-valid-nonce"}


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    return payments_env(gateway)


def until(feed: Feed, matches: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0) -> dict[str, Any]:
    """Read frames (skipping others) until one matches."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    seen: list[str] = []
    while datetime.now(UTC) < deadline:
        frame = feed.recv(timeout=max(0.1, (deadline - datetime.now(UTC)).total_seconds()))
        if matches(frame):
            return frame
        seen.append(f"{frame.get('type')}/{frame.get('stream')}/{frame.get('op')}")
    raise AssertionError(f"no {what} within {timeout:.0f}s; saw {seen[-15:]}")


def still_open(feed: Feed) -> None:
    feed.send(type="ping", id="alive")
    until(feed, lambda f: f["type"] == "pong", "pong")


def test_mongodb_refuses_a_malformed_write_and_names_the_rule(
    db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann = signup()
    with pytest.raises(WriteError) as refused:
        db.contacts.insert_one({"owner": ObjectId(ann.id), "name": "x"})  # no created_at, updated_at
    assert refused.value.code == 121
    details = str(refused.value.details)
    assert "required" in details and "created_at" in details and "a contact" in details


def test_a_changed_or_missing_validator_is_put_back_at_start(server: Server, mongo_url: str, db: Database[Any]) -> None:
    db.command("collMod", "contacts", validator={}, validationLevel="off")
    later = Server(mongo_url, server.db_name).start()
    later.stop()
    options = db.command("listCollections", filter={"name": "contacts"})["cursor"]["firstBatch"][0]["options"]
    assert (
        options["validationLevel"] == "moderate" and options["validator"]["$jsonSchema"]["description"] == "a contact"
    )
    assert "changeStreamPreAndPostImages" in options  # and the pre-images stay on


def test_a_well_formed_shell_write_is_accepted_shown_and_pushed(
    server: Server, db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann = signup()
    me = {"_id": ObjectId(ann.id), "name": "Ann"}
    now = datetime.now(UTC)
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts")
        feed.subscribe("d", "documents")
        db.contacts.insert_one({"owner": me["_id"], "name": "From the shell", "created_at": now, "updated_at": now})
        assert until(feed, lambda f: f.get("sub") == "c", "contact")["data"]["name"] == "From the shell"
        # The shell writes numbers as doubles: version 1 is stored as 1.0 and shown as 1.
        db.documents.insert_one({"title": "Shell", "slug": "shell", "version": 1.0, "owner": me, "collaborators": [],
                                 "access": [me["_id"]], "created_at": now, "updated_at": now})  # fmt: skip
        event = until(feed, lambda f: f.get("sub") == "d", "document")
        assert event["data"]["version"] == 1 and type(event["data"]["version"]) is int
    assert [c["name"] for c in ann.get("/contacts").json()["items"]] == ["From the shell"]
    answer = ann.get(f"/documents/{event['id']}")
    assert answer.status_code == 200 and answer.headers["ETag"] == '"1"'
    assert ann.patch(f"/documents/{event['id']}", json={"body": "edited"}).json()["version"] == 2


def test_a_stored_document_that_cannot_be_shown_is_left_out_of_lists_and_alone_is_a_409(
    server: Server, db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann = signup()
    now = datetime.now(UTC)
    junk = db.contacts.insert_one(
        {"owner": ObjectId(ann.id), "name": 5, "created_at": now, "updated_at": now}, bypass_document_validation=True
    ).inserted_id
    ann.post("/contacts", json={"name": "Good"})
    listing = ann.get("/contacts")
    assert listing.status_code == 200 and [c["name"] for c in listing.json()["items"]] == ["Good"]
    alone = ann.get(f"/contacts/{junk}")
    assert alone.status_code == 409 and alone.json()["error"]["code"] == "conflict"
    assert "cannot read" in alone.json()["error"]["message"] and str(junk) in alone.json()["error"]["message"]
    assert ann.delete(f"/contacts/{junk}").status_code == 204  # it can still be removed
    wait_for(lambda: f"contacts ObjectId('{junk}') cannot be shown" in server.log_path.read_text(), what="the log line")
    metrics = ann.get("/metrics").text
    assert 'murmuration_malformed_documents_total{collection="contacts"}' in metrics


def test_a_hand_made_user_that_cannot_be_read_is_not_found_by_email_instead_of_breaking_sharing(
    db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann = signup()
    half = {"email": "half@example.com", "created_at": datetime.now(UTC), "email_verified": True}
    db.users.insert_one(half, bypass_document_validation=True)
    doc = ann.post("/documents", json={"title": "t"}).json()
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": "half@example.com", "role": "viewer"})
    assert shared.status_code == 409 and "operator can repair" in shared.json()["error"]["message"]
    room = ann.post("/rooms", json={"name": "r"}).json()
    assert ann.post(f"/rooms/{room['id']}/members", json={"email": "half@example.com"}).status_code == 409
    assert ann.get(f"/documents/{doc['id']}").json()["collaborators"] == []
    created = ann.post("/rooms", json={"name": "r2", "members": ["half@example.com"]})
    assert created.status_code == 201 and [m["name"] for m in created.json()["members"]] == ["Ann"]


# --- the fuzz: every collection, randomly malformed, while subscribers listen --------------------

JUNK: list[Any] = [None, 0, -1, 1.5, math.inf, True, "", "x", "0" * 24, [], [1, "a"], [None], {}, {"a": 1},
                   {"_id": "x"}, [{"_id": 1}], ObjectId(), datetime(1970, 1, 1, tzinfo=UTC)]  # fmt: skip


def templates(ann: ObjectId, bob: ObjectId, document: ObjectId, room: ObjectId) -> dict[str, Callable[[], Any]]:
    """A well-formed document for each collection, as the service writes it, to be broken."""
    now = datetime.now(UTC)
    ann_ref, bob_ref = {"_id": ann, "name": "Ann"}, {"_id": bob, "name": "Bob"}
    return {
        "contacts": lambda: {"owner": ann, "name": "c", "tags": ["t"], "created_at": now, "updated_at": now},
        "documents": lambda: {"title": "d", "slug": "d", "version": 1, "owner": ann_ref, "access": [ann, bob],
                              "collaborators": [{**bob_ref, "role": "editor"}], "created_at": now, "updated_at": now},
        "revisions": lambda: {"document": document, "version": 1, "title": "r", "edited_by": ann_ref,
                              "edited_at": now},
        "presence": lambda: {"_id": f"fuzz:{ObjectId()}", "document": document, "user": bob, "name": "Bob",
                             "state": "viewing", "conn": "fuzz", "instance": "fuzz", "at": now},
        "connections": lambda: {"_id": f"fuzz-{ObjectId()}", "user": bob, "instance": "fuzz", "at": now},
        "instances": lambda: {"_id": f"fuzz/{ObjectId()}", "heartbeat_at": now - timedelta(hours=1)},
        "rooms": lambda: {"name": "r", "members": [ann_ref, bob_ref], "access": [ann, bob], "created_by": ann_ref,
                          "created_at": now},
        "messages": lambda: {"room": room, "author": bob_ref, "text": "m", "access": [ann, bob], "created_at": now},
        "reads": lambda: {"_id": f"{room}:{ObjectId()}", "message": ObjectId(), "at": now},
        "signals": lambda: {"_id": f"typing:{room}:{ObjectId()}", "room": room, "user": bob, "name": "Bob",
                            "access": [ann, bob], "at": now, "expires_at": now + timedelta(seconds=5)},
        "orders": lambda: {"owner": ann, "idempotency_key": str(ObjectId()), "fingerprint": "f", "status": "pending",
                           "amount": "19.99", "currency": "USD", "nonce": "fake-valid-nonce", "transaction": None,
                           "items": [{"sku": "tee", "name": "T", "quantity": 1, "price": "19.99", "total": "19.99"}],
                           "errors": [], "attempts": 0, "sale_attempted": False, "lease_owner": None,
                           "lease_until": None, "next_attempt_at": now, "created_at": now, "updated_at": now},
        "sessions": lambda: {"_id": str(ObjectId()), "user": ann, "created_at": now, "expires_at": now},
        "users": lambda: {"email": f"{ObjectId()}@fuzz.example", "name": "F", "password": "x", "created_at": now},
        "throttles": lambda: {"_id": f"login:email:{ObjectId()}", "failures": 1, "expires_at": now},
    }  # fmt: skip


def broken(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with one to three fields removed or replaced by junk (nested ones too)."""
    doc = dict(doc)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice([k for k in doc if k != "_id"] or ["extra"])
        if rng.random() < 0.3:
            doc.pop(key, None)
        elif isinstance(doc.get(key), dict) and rng.random() < 0.5:
            doc[key] = {**doc[key], rng.choice(list(doc[key]) or ["x"]): rng.choice(JUNK)}
        elif isinstance(doc.get(key), list) and doc[key] and rng.random() < 0.5:
            doc[key] = [*doc[key], rng.choice(JUNK)]
        else:
            doc[key] = rng.choice(JUNK)
    return doc


def fuzz(db: Database[Any], shapes: dict[str, Callable[[], Any]], rounds: int) -> Iterator[str]:
    """Malformed inserts, updates that break good documents, and deletes, as the shell would do them."""
    rng = random.Random(SEED)
    for _ in range(rounds):
        name = rng.choice(sorted(shapes))
        collection = db[name]
        try:
            inserted = collection.insert_one(broken(rng, shapes[name]()), bypass_document_validation=True).inserted_id
            good = collection.insert_one(shapes[name]()).inserted_id  # well-formed: the validator lets it in
            field = rng.choice(list(shapes[name]()))
            if field != "_id":
                collection.update_one(
                    {"_id": good}, {"$set": {field: rng.choice(JUNK)}}, bypass_document_validation=True
                )
            if rng.random() < 0.3:
                collection.delete_one({"_id": rng.choice([inserted, good])})
        except DuplicateKeyError:
            pass  # unique indexes hold even with the validator bypassed
        yield name


def test_malformed_data_in_every_collection_stops_no_stream_route_or_task(
    server: Server, db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    shared = ann.post("/documents", json={"title": "Shared"}).json()
    ann.post(f"/documents/{shared['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    room = ann.post("/rooms", json={"name": "Room", "members": [bob.email]}).json()
    shapes = templates(ObjectId(ann.id), ObjectId(bob.id), ObjectId(shared["id"]), ObjectId(room["id"]))
    with Feed(server, ann) as ann_feed, Feed(server, bob) as bob_feed:
        for sub, stream, params in (("c", "contacts", None), ("d", "documents", None), ("r", "room", None),
                                    ("p", "presence", None), ("$", "orders", None), ("o", "online", None)):  # fmt: skip
            ann_feed.subscribe(sub, stream, params)
        for sub, stream in (("d", "documents"), ("r", "room"), ("p", "presence")):
            bob_feed.subscribe(sub, stream)
        before = ann.post("/contacts", json={"name": "before"}).json()
        cursor = until(ann_feed, lambda f: f.get("id") == before["id"], "the contact before")["cursor"]

        touched = sorted(set(fuzz(db, shapes, rounds=160)))
        assert touched == sorted(shapes)  # every collection got its share

        # Every well-formed change after the junk reaches every entitled subscriber.
        contact = ann.post("/contacts", json={"name": "after"}).json()
        until(ann_feed, lambda f: f.get("sub") == "c" and f.get("id") == contact["id"], "the new contact")
        patched = ann.patch(f"/documents/{shared['id']}", json={"body": "after the junk"})
        assert patched.status_code == 200, patched.text
        for feed in (ann_feed, bob_feed):
            until(feed, lambda f: f.get("sub") == "d" and f.get("id") == shared["id"] and f["op"] == "update"
                  and f["data"]["body"] == "after the junk", "the document update")  # fmt: skip
        message = bob.post(f"/rooms/{room['id']}/messages", json={"text": "after"}).json()
        for feed in (ann_feed, bob_feed):
            until(feed, lambda f: f.get("sub") == "r" and f.get("id") == message["id"], "the message")
        ann_feed.send(type="presence", document=shared["id"], state="editing")
        until(bob_feed, lambda f: f.get("sub") == "p" and f.get("id") == shared["id"]
              and any(u["id"] == ann.id for u in f["data"]["editing"]), "Ann editing")  # fmt: skip
        order = ann.post("/orders", headers={"Idempotency-Key": "after-the-junk"}, json=TEE)
        until(ann_feed, lambda f: f.get("sub") == "$" and f.get("id") == order.json()["id"]
              and (f["data"] or {}).get("status") == "paid", "the order paid", timeout=30)  # fmt: skip
        still_open(ann_feed)
        still_open(bob_feed)

    # A resume across the junk replays what is well-formed and stays open.
    with Feed(server, ann) as again:
        replayed = again.subscribe("c", "contacts", since=cursor)
        assert contact["id"] in [f["id"] for f in replayed]
        still_open(again)

    for account in (ann, bob):
        document, messages = f"/documents/{shared['id']}", f"/rooms/{room['id']}/messages"
        for path in ("/contacts", "/documents", f"{document}/revisions", f"{document}/presence", "/rooms", messages,
                     "/orders", "/auth/me"):  # fmt: skip
            answer = account.get(path)
            assert answer.status_code == 200, (path, answer.text)
    assert ann.post("/auth/login", json={"email": ann.email, "password": ann.password}).status_code == 200
    health = wait_for(lambda: (h := ann.get("/health")).status_code == 200 and h, what="/health ok")
    assert all(task["restarts"] == 0 for task in health.json()["tasks"].values()), health.json()
    metrics = ann.get("/metrics").text
    assert "murmuration_skipped_changes_total" in metrics and "murmuration_malformed_documents_total" in metrics


def test_hand_made_orders_fail_once_and_real_ones_are_still_charged(
    server: Server, db: Database[Any], signup: Callable[..., Account]
) -> None:
    ann = signup()
    now = datetime.now(UTC)
    line = {"sku": "tee", "name": "T-shirt", "quantity": 1, "price": "19.99", "total": "19.99"}
    base = {"owner": ObjectId(ann.id), "fingerprint": "f", "status": "pending", "amount": "19.99", "currency": "USD",
            "items": [line], "transaction": None, "errors": [], "attempts": 0, "sale_attempted": False,
            "lease_owner": None, "lease_until": None, "next_attempt_at": now - timedelta(seconds=5),
            "created_at": now, "updated_at": now}  # fmt: skip
    unchargeable = [
        {**base, "idempotency_key": "no-nonce-1"},
        {**base, "idempotency_key": "no-nonce-2"},
        {**base, "idempotency_key": "unknown-sku", "nonce": "fake-valid-nonce", "items": [{**line, "sku": "nope"}]},
        {**base, "idempotency_key": "bad-amount", "nonce": "fake-valid-nonce", "amount": "lots"},
        {**base, "idempotency_key": "no-items", "nonce": "fake-valid-nonce", "items": "tee"},
    ]
    odd_but_fine = {**base, "idempotency_key": "attempts-as-text", "nonce": "fake-valid-nonce", "attempts": "x",
                    "items": [{**line, "quantity": 1.0}]}  # fmt: skip
    ids = [
        db.orders.insert_one(doc, bypass_document_validation=True).inserted_id for doc in [*unchargeable, odd_but_fine]
    ]
    real = ann.post("/orders", headers={"Idempotency-Key": "real"}, json=TEE)
    wait_for(lambda: ann.get(f"/orders/{real.json()['id']}").json()["status"] == "paid", 30, "the real order paid")

    def final(order_id: ObjectId) -> dict[str, Any] | None:
        doc = db.orders.find_one({"_id": order_id})
        return doc if doc and doc["status"] in ("paid", "failed", "declined") else None

    done = [wait_for(lambda i=i: final(i), 30, f"order {i} finished") for i in ids]
    assert [(d["status"], [e["code"] for e in d["errors"]]) for d in done[:-1]] == [("failed", ["unchargeable"])] * 5
    assert "nonce" in done[0]["errors"][0]["message"] and "catalog" in done[2]["errors"][0]["message"]
    assert done[-1]["status"] == "paid"  # attempts written as text did not stop its claim
    assert all(d["attempts"] == 1 for d in done[:-1])  # failed once, not retried
    health = ann.get("/health").json()
    assert health["status"] == "ok" and all(t["restarts"] == 0 for t in health["tasks"].values()), health
