"""Payments: orders charged in the background through the real Braintree SDK and a local gateway."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import braintree
import httpx
import pytest
from bson import ObjectId

from deploy.local.gateway import GatewayServer

from .feed import Feed
from .harness import PAYMENT_KEYS, Account, Server, payments_env, wait_for


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    return payments_env(gateway)


def order(account: Account, key: str, nonce: str = "fake-valid-nonce", **items: int) -> httpx.Response:
    lines = [{"sku": sku.replace("_", "-"), "quantity": n} for sku, n in (items or {"tee": 1}).items()]
    return account.post(
        "/orders", json={"items": lines, "payment_method_nonce": nonce}, headers={"Idempotency-Key": key}
    )


def settled(account: Account, order_id: str, timeout: float = 30) -> dict:
    def final() -> dict | None:
        doc = account.get(f"/orders/{order_id}").json()
        return doc if doc["status"] in ("paid", "declined", "failed") else None

    return wait_for(final, timeout, f"order {order_id} to be processed")


def sales(gateway: GatewayServer, order_id: str) -> list[dict]:
    return [t for t in gateway.emulator.transactions.values() if t["order_id"] == order_id and t["type"] == "sale"]


def signer() -> braintree.BraintreeGateway:
    """The SDK with the test keys, only to sign sample webhooks: nothing is sent."""
    keys = [PAYMENT_KEYS[name] for name in ("BRAINTREE_MERCHANT_ID", "BRAINTREE_PUBLIC_KEY", "BRAINTREE_PRIVATE_KEY")]
    return braintree.BraintreeGateway(braintree.Configuration(braintree.Environment.Sandbox, *keys))


def test_the_catalog_and_a_client_token_come_from_the_server(signup) -> None:
    ann = signup()
    items = ann.get("/catalog").json()["items"]
    assert {"sku": "tee", "name": "T-shirt", "price": "19.99", "currency": "USD"} in items
    answer = ann.get("/payments/client-token").json()
    assert isinstance(answer["client_token"], str) and len(answer["client_token"]) > 20
    assert answer["environment"] == "local"  # the emulator: a page offers test nonces instead of Drop-in


def test_a_valid_nonce_pays_the_server_computed_amount_once(signup, gateway) -> None:
    ann = signup()
    answer = order(ann, "k-paid", tee=2, mug=1)
    assert answer.status_code == 202
    placed = answer.json()
    assert (placed["status"], placed["amount"], placed["currency"], placed["transaction"]) == (
        "pending",
        "52.48",
        "USD",
        None,
    )
    assert [(i["sku"], i["quantity"], i["price"], i["total"]) for i in placed["items"]] == [
        ("tee", 2, "19.99", "39.98"), ("mug", 1, "12.50", "12.50")]  # fmt: skip
    done = settled(ann, placed["id"])
    assert done["status"] == "paid" and done["errors"] == []
    assert done["transaction"]["status"] == "submitted_for_settlement"
    charged = sales(gateway, placed["id"])
    assert len(charged) == 1 and charged[0]["id"] == done["transaction"]["id"] and charged[0]["amount"] == "52.48"


@pytest.mark.parametrize(
    ("nonce", "items", "status", "code"),
    [
        ("fake-processor-declined-visa-nonce", {"tee": 1}, "declined", "2000"),
        ("fake-valid-nonce", {"declined_2001": 1}, "declined", "2001"),
        ("fake-gateway-rejected-fraud-nonce", {"tee": 1}, "declined", "fraud"),
        ("fake-valid-nonce", {"rejected_5001": 1}, "declined", "application_incomplete"),
        ("fake-valid-nonce", {"failed_3000": 1}, "failed", "3000"),
        ("fake-consumed-nonce", {"tee": 1}, "failed", "93107"),
        ("fake-luhn-invalid-nonce", {"tee": 1}, "failed", "81715"),
    ],
)
def test_declines_and_failures_end_with_the_gateways_answer(signup, nonce, items, status, code) -> None:
    ann = signup()
    placed = order(ann, f"k-{nonce}-{code}", nonce, **items).json()
    done = settled(ann, placed["id"])
    assert done["status"] == status
    assert done["errors"] and done["errors"][0]["code"] == code and done["errors"][0]["message"]


def test_concurrent_retries_with_one_key_make_one_order_and_one_charge(signup, gateway, db) -> None:
    ann = signup()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: order(ann, "k-same", tee=3), range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    order_id = answers[0].json()["id"]
    assert settled(ann, order_id)["status"] == "paid"
    assert db.orders.count_documents({"owner": ObjectId(ann.id)}) == 1 and len(sales(gateway, order_id)) == 1
    assert order(ann, "k-same", tee=3).json()["status"] == "paid"  # a late retry sees the outcome
    conflict = order(ann, "k-same", tee=4)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"


def test_bad_orders_are_refused_and_store_nothing(signup, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    mine = order(ann, "k-mine").json()
    line = {"sku": "tee", "quantity": 1}
    cases = [
        ({"items": [line], "payment_method_nonce": "fake-valid-nonce"}, {}, 400),
        ({"items": [{"sku": "nope", "quantity": 1}], "payment_method_nonce": "n"}, {"Idempotency-Key": "a"}, 422),
        ({"items": [{"sku": "tee", "quantity": 0}], "payment_method_nonce": "n"}, {"Idempotency-Key": "b"}, 422),
        ({"items": [{"sku": "tee", "quantity": 10**6}], "payment_method_nonce": "n"}, {"Idempotency-Key": "c"}, 422),
        ({"items": [line], "payment_method_nonce": "n", "amount": "0.01"}, {"Idempotency-Key": "d"}, 422),
        ({"items": [{**line, "price": "0.01"}], "payment_method_nonce": "n"}, {"Idempotency-Key": "e"}, 422),
        ({"items": [], "payment_method_nonce": "n"}, {"Idempotency-Key": "f"}, 422),
        ({"items": [line]}, {"Idempotency-Key": "g"}, 422),
    ]
    for payload, headers, status in cases:
        answer = bob.post("/orders", json=payload, headers=headers)
        assert answer.status_code == status, (payload, answer.text)
    assert db.orders.count_documents({"owner": ObjectId(bob.id)}) == 0
    assert bob.get(f"/orders/{mine['id']}").status_code == 404
    assert [o["id"] for o in ann.get("/orders").json()["items"]] == [mine["id"]] and bob.get("/orders").json()[
        "items"
    ] == []


def test_gateway_timeouts_and_errors_are_retried_until_the_order_is_paid(signup, gateway) -> None:
    ann = signup()
    httpx.post(f"{gateway.url}/__emulator/faults", json={"mode": "timeout", "delay": 4})
    httpx.post(f"{gateway.url}/__emulator/faults", json={"mode": "error"})
    placed = order(ann, "k-flaky").json()
    assert settled(ann, placed["id"], timeout=60)["status"] == "paid"
    assert len(sales(gateway, placed["id"])) == 1


def test_a_charge_whose_answer_was_lost_is_found_not_repeated(signup, gateway) -> None:
    ann = signup()
    httpx.post(f"{gateway.url}/__emulator/faults", json={"mode": "timeout_after_sale", "delay": 4})
    placed = order(ann, "k-lost-answer").json()
    done = settled(ann, placed["id"], timeout=60)
    assert done["status"] == "paid"
    charged = sales(gateway, placed["id"])
    assert len(charged) == 1 and done["transaction"]["id"] == charged[0]["id"]


def test_a_worker_killed_between_the_sale_and_its_record_charges_once(mongo_url, gateway, server_env) -> None:
    env = {**server_env, "BRAINTREE_TIMEOUT": "20", "PAYMENT_LEASE": "25"}
    doomed = Server(mongo_url, "payments_crash", env=env).start()
    try:
        ann = Account.register(doomed.url, "Ann")
        httpx.post(f"{gateway.url}/__emulator/faults", json={"mode": "timeout_after_sale", "delay": 60})
        placed = order(ann, "k-crash").json()
        wait_for(lambda: sales(gateway, placed["id"]), 30, "the sale to reach the gateway")
        doomed.kill()  # charged at the gateway, never recorded here
    finally:
        doomed.kill()
    revived = Server(mongo_url, "payments_crash", env=env).start()
    try:
        ann = Account(base_url=revived.url, headers={"Authorization": f"Bearer {ann.token}"})
        done = settled(ann, placed["id"], timeout=90)  # once the dead worker's lease runs out
        assert done["status"] == "paid"
        assert len(sales(gateway, placed["id"])) == 1
    finally:
        revived.stop()
        httpx.post(f"{gateway.url}/__emulator/reset")


def test_workers_on_two_instances_never_charge_an_order_twice(server, mongo_url, gateway, server_env) -> None:
    other = Server(mongo_url, server.db_name, env={**server_env, "PAYMENT_WORKERS": "4"}).start()
    try:
        ann = Account.register(server.url, "Ann")
        placed = [order(ann, f"k-race-{i}").json()["id"] for i in range(20)]
        for order_id in placed:
            assert settled(ann, order_id)["status"] == "paid"
        assert all(len(sales(gateway, order_id)) == 1 for order_id in placed)
    finally:
        other.stop()


def test_webhooks_update_the_transaction_and_bad_signatures_change_nothing(signup, gateway, anon) -> None:
    ann = signup()
    done = settled(ann, order(ann, "k-hook").json()["id"])
    sdk = signer()
    kind = braintree.WebhookNotification.Kind.TransactionSettled
    raw = sdk.webhook_testing.sample_notification(kind, done["transaction"]["id"])
    sample = {"bt_signature": raw["bt_signature"], "bt_payload": raw["bt_payload"].decode()}  # as a form sends it
    forged = {"bt_signature": sample["bt_signature"].replace("|", "|0"), "bt_payload": sample["bt_payload"]}
    refused = anon.post("/payments/webhooks", data=forged)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"
    assert ann.get(f"/orders/{done['id']}").json()["transaction"]["status"] == "submitted_for_settlement"
    httpx.post(f"{gateway.url}/__emulator/settle/{done['transaction']['id']}").raise_for_status()  # what it reports
    accepted = anon.post("/payments/webhooks", data=sample)
    assert accepted.status_code == 200
    assert ann.get(f"/orders/{done['id']}").json()["transaction"] == {
        "id": done["transaction"]["id"],
        "status": "settled",
    }


def test_order_status_changes_reach_only_their_owner_live(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    with Feed(server, ann) as a, Feed(server, bob) as b:
        a.subscribe("o", "orders")
        b.subscribe("o", "orders")
        placed = order(ann, "k-live").json()
        seen = []
        while not seen or seen[-1] not in ("paid", "declined", "failed"):
            event = a.event("o")
            assert event["id"] == placed["id"]
            seen.append(event["data"]["status"])
        assert seen == ["pending", "processing", "paid"]
        mine = order(bob, "k-bob").json()
        assert b.event("o")["id"] == mine["id"]  # nothing of Ann's came first


def test_payment_routes_answer_503_without_braintree(mongo_url) -> None:
    plain = Server(mongo_url, f"nopay_{int(time.time())}").start()
    try:
        ann = Account.register(plain.url, "Ann")
        for method, path in (("GET", "/catalog"), ("GET", "/payments/client-token"), ("GET", "/orders"),
                             ("POST", "/orders"), ("POST", f"/orders/{ObjectId()}/cancel"),
                             ("POST", "/payments/webhooks")):  # fmt: skip
            answer = ann.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code == 503, path
            assert answer.json()["error"]["code"] == "payments_unavailable"
    finally:
        plain.stop()


def test_without_braintree_payment_routes_still_authenticate_and_rate_limit_first(mongo_url) -> None:
    plain = Server(mongo_url, f"nopay_anon_{int(time.time())}", env={"ANON_RATE_LIMIT": "60"}).start()
    try:
        with httpx.Client(base_url=plain.url, timeout=30) as anon:
            assert anon.get("/catalog").json()["error"]["code"] == "unauthorized"
            bogus = anon.get("/orders", headers={"Authorization": "Bearer mm_bogus"})
            assert bogus.status_code == 401
            assert anon.post("/payments/webhooks").json()["error"]["code"] == "payments_unavailable"  # public
            codes = [anon.get("/catalog").status_code for _ in range(15)]  # a burst of 10 anonymous calls
            assert set(codes) == {401, 429}
            assert 'route="catalog",status="401"' in anon.get("/metrics").text
    finally:
        plain.stop()


def test_sigterm_with_a_sale_in_flight_gives_back_unstarted_leases_within_seconds(
    mongo_url, gateway, server_env, mongo
) -> None:
    env = {**server_env, "BRAINTREE_TIMEOUT": "30", "PAYMENT_LEASE": "90", "PAYMENT_WORKERS": "1"}
    stopping = Server(mongo_url, f"payments_stop_{int(time.time())}", env=env).start()
    db = mongo[stopping.db_name]
    try:
        ann = Account.register(stopping.url, "Ann")
        httpx.post(f"{gateway.url}/__emulator/faults", json={"mode": "timeout", "delay": 30, "count": 1})
        in_flight = order(ann, "k-in-flight").json()
        wait_for(lambda: db.orders.find_one({"_id": ObjectId(in_flight["id"]), "sale_attempted": True}), 20,
                 "the sale to be under way")  # fmt: skip
        me = db.instances.find_one({"name": f"test-{stopping.port}"})["_id"]
        claimed = order(ann, "k-claimed").json()  # as if a second loop had claimed it and not sent it yet
        lease = {"status": "processing", "lease_owner": me, "lease_until": datetime.now(UTC) + timedelta(minutes=5)}
        db.orders.update_one({"_id": ObjectId(claimed["id"])}, {"$set": lease})
        started = time.monotonic()
        stopping.stop(timeout=30)
        assert time.monotonic() - started < 9  # Sanic's main process gives a worker 10 s
        assert db.orders.find_one({"_id": ObjectId(claimed["id"])})["lease_owner"] is None
        assert db.instances.count_documents({"_id": me}) == 0
        assert "Task was destroyed" not in stopping.log_tail(80) and "no running event loop" not in stopping.log_tail(
            80
        )
    finally:
        stopping.kill()
        httpx.post(f"{gateway.url}/__emulator/reset")


def test_an_idempotency_key_that_is_not_printable_ascii_is_a_400(signup) -> None:
    ann = signup()
    for key in (b"\xff\xfe", b"tab\tkey"):
        answer = ann.post("/orders", json={"items": [{"sku": "tee", "quantity": 1}], "payment_method_nonce": "n"},
                          headers={"Idempotency-Key": key})  # fmt: skip
        assert answer.status_code == 400, answer.text


def test_the_demo_catalog_loads(tmp_path: Path) -> None:
    from service.config import ROOT as SERVICE_ROOT
    from service.config import ConfigError
    from service.payments.catalog import Catalog

    demo = Catalog.load(SERVICE_ROOT / "service" / "payments" / "catalog.json")
    assert demo.currency == "USD" and all(item.price > 0 for item in demo.items.values())
    broken = tmp_path / "catalog.json"
    broken.write_text('{"currency": "USD", "items": [{"sku": "x", "name": "x", "price": "1.001"}]}')
    with pytest.raises(ConfigError, match="CATALOG_PATH"):
        Catalog.load(broken)


def test_a_replay_of_orders_carries_only_the_callers_orders(server, signup) -> None:
    from .feed import cursor_after_a_write

    ann, bob = signup("Ann"), signup("Bob")
    cursor = cursor_after_a_write(server, ann)
    mine = settled(ann, order(ann, "k-replay-ann").json()["id"])
    settled(bob, order(bob, "k-replay-bob").json()["id"])
    with Feed(server, ann) as feed:
        replayed = feed.subscribe("o", "orders", since=cursor)
    assert {e["id"] for e in replayed} == {mine["id"]}
    assert [e["data"]["status"] for e in replayed] == ["pending", "processing", "paid"]


def test_a_sku_on_two_lines_is_charged_for_both_and_a_whole_float_quantity_counts(signup, gateway) -> None:
    ann = signup()
    lines = [{"sku": "tee", "quantity": 1}, {"sku": "tee", "quantity": 2.0}]  # JSON's 2.0 is JavaScript's 2
    placed = ann.post("/orders", json={"items": lines, "payment_method_nonce": "fake-valid-nonce"},
                      headers={"Idempotency-Key": "k-two-lines"})  # fmt: skip
    assert placed.status_code == 202 and placed.json()["amount"] == "59.97"
    assert [line["quantity"] for line in placed.json()["items"]] == [1, 2]
    assert settled(ann, placed.json()["id"])["status"] == "paid"
