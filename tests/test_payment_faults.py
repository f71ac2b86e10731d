"""Payments under every fault the gateway emulator can inject: one charge, and the gateway's truth.

The module's server runs with BRAINTREE_TIMEOUT=2 (a total deadline per call), PAYMENT_SETTLE_DELAY=1
and PAYMENT_SWEEP=1 (see `payments_env`); tests that need other timings start their own servers.
"""

from __future__ import annotations

import base64
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import braintree
import httpx
import pytest
from braintree.util.crypto import Crypto
from bson import ObjectId

from deploy.local.gateway import GatewayServer
from service.payments.states import GATEWAY_STATUS

from .feed import Feed
from .harness import PAYMENT_KEYS, Account, Server, payments_env, wait_for
from .test_payments import order, sales, settled, signer


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    return payments_env(gateway)


@pytest.fixture(autouse=True)
def clean_gateway(gateway: GatewayServer) -> Iterator[None]:
    yield
    httpx.post(f"{gateway.url}/__emulator/reset")


def fault(gateway: GatewayServer, **what: object) -> None:
    httpx.post(f"{gateway.url}/__emulator/faults", json=what).raise_for_status()


def search_lag(gateway: GatewayServer, seconds: float) -> None:
    httpx.post(f"{gateway.url}/__emulator/search_lag", json={"seconds": seconds}).raise_for_status()


def credits(gateway: GatewayServer, sale_id: str) -> list[dict]:
    return [t for t in gateway.emulator.transactions.values() if t.get("refunded_transaction_id") == sale_id]


def reached(account: Account, order_id: str, status: str, timeout: float = 40) -> dict:
    def now() -> dict | None:
        doc = account.get(f"/orders/{order_id}").json()
        return doc if doc.get("status") == status else None  # a hand-made order may be unreadable (409) meanwhile

    return wait_for(
        now, timeout, f"order {order_id} to be {status}", lambda: str(account.get(f"/orders/{order_id}").json())
    )


def single_use_nonce() -> str:
    return str(uuid.uuid4())  # the shape Drop-in hands out: the emulator accepts it once


def test_a_sale_answered_slower_than_its_deadline_is_looked_up_not_repeated(signup, gateway) -> None:
    ann = signup()
    fault(gateway, mode="slow", delay=40)  # each read is quick, the answer takes 40 s: past every deadline
    placed = order(ann, "k-slow").json()
    done = reached(ann, placed["id"], "paid", timeout=30)  # long before the answer would have arrived
    charged = sales(gateway, placed["id"])
    assert len(charged) == 1 and done["transaction"]["id"] == charged[0]["id"]
    assert "found at the gateway" in done["history"][-1]["reason"]


def test_a_worker_frozen_mid_sale_past_its_lease_does_not_let_another_charge_again(
    mongo_url, gateway, server_env
) -> None:
    """The lapsed-lease case: while the first worker is frozen, the second must not sell again
    although the gateway's search does not show the sale yet."""
    env = {**server_env, "PAYMENT_LEASE": "7", "PAYMENT_SETTLE_DELAY": "12", "PAYMENT_WORKERS": "1"}
    name = f"payments_frozen_{uuid.uuid4().hex[:6]}"
    frozen = Server(mongo_url, name, env=env).start()
    other: Server | None = None
    try:
        ann = Account.register(frozen.url, "Ann")
        search_lag(gateway, 10)  # the sale shows in searches 10 s after it is made
        fault(gateway, mode="slow", delay=60)
        placed = order(ann, "k-frozen").json()
        wait_for(lambda: sales(gateway, placed["id"]), 20, "the sale to reach the gateway")
        assert frozen.process is not None
        os.killpg(frozen.process.pid, signal.SIGSTOP)  # a worker that stops answering mid-call
        other = Server(mongo_url, name, env=env).start()
        ann = Account(base_url=other.url, headers={"Authorization": f"Bearer {ann.token}"})
        done = reached(ann, placed["id"], "paid", timeout=60)
        assert len(sales(gateway, placed["id"])) == 1
        assert done["transaction"]["id"] == sales(gateway, placed["id"])[0]["id"]
        os.killpg(frozen.process.pid, signal.SIGCONT)  # it wakes up: its late answer changes nothing
        noticed = ("another worker holds it now", "lease was lost")
        wait_for(lambda: any(words in frozen.log_tail(200) for words in noticed), 30,
                 "the frozen worker to notice it lost the order", frozen.log_tail)  # fmt: skip
        assert ann.get(f"/orders/{placed['id']}").json()["status"] == "paid"
        assert len(sales(gateway, placed["id"])) == 1
    finally:
        frozen.kill()
        if other is not None:
            other.stop()


def test_a_reused_nonce_after_an_uncertain_sale_waits_for_the_first_sale_and_ends_paid(signup, gateway) -> None:
    ann = signup()
    search_lag(gateway, 8)  # longer than the settle window (2 s deadline + 1 s)
    fault(gateway, mode="timeout_after", delay=5)  # charged, the answer lost
    placed = order(ann, "k-93107", nonce=single_use_nonce()).json()
    done = reached(ann, placed["id"], "paid", timeout=40)
    assert len(sales(gateway, placed["id"])) == 1  # the second sale was refused (93107), not made
    assert [h["status"] for h in done["history"]] == ["pending", "processing", "paid"]
    assert done["errors"] == []


def test_an_order_failed_for_want_of_a_record_is_corrected_live_when_the_charge_shows(
    mongo_url, gateway, server_env
) -> None:
    env = {**server_env, "PAYMENT_UNCERTAIN_FOR": "3"}
    with Server(mongo_url, f"payments_sweep_{uuid.uuid4().hex[:6]}", env=env) as server:
        ann = Account.register(server.url, "Ann")
        search_lag(gateway, 12)
        fault(gateway, mode="timeout_after", delay=5)
        with Feed(server, ann) as feed:
            feed.subscribe("o", "orders")
            placed = order(ann, "k-sweep", nonce=single_use_nonce()).json()
            seen: list[str] = []
            while not seen or seen[-1] != "paid":
                seen.append(feed.event("o", timeout=40)["data"]["status"])
        assert seen == ["pending", "processing", "failed", "paid"]
        done = ann.get(f"/orders/{placed['id']}").json()
        assert done["errors"] == [] and len(sales(gateway, placed["id"])) == 1
        assert done["history"][-2]["status"] == "failed" and "no transaction" in done["history"][-2]["reason"]
        assert done["history"][-1]["reason"].startswith("reconciled: the gateway has transaction")
        assert (
            'murmuration_payment_corrections_total{from_status="failed",to_status="paid"}'
            in httpx.get(f"{server.url}/metrics").text
        )


def test_a_failed_order_the_shell_left_without_its_charge_is_set_right_by_the_sweep(signup, gateway, db) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-shell-failed").json()["id"])
    db.orders.update_one(
        {"_id": ObjectId(paid["id"])},
        {"$set": {"status": "failed", "transaction": None, "history": "lost", "reconcile_after": datetime.now(UTC)}},
    )
    done = reached(ann, paid["id"], "paid", timeout=20)
    assert done["transaction"]["id"] == paid["transaction"]["id"]
    assert [h["status"] for h in done["history"]] == ["paid"]  # a history that was not a list starts again


@pytest.mark.parametrize(("gateway_status", "status"), sorted(GATEWAY_STATUS.items()))
def test_every_braintree_status_gives_its_order_the_status_of_the_table(signup, gateway, gateway_status, status):
    ann = signup()
    fault(gateway, mode="status", status=gateway_status)
    placed = order(ann, f"k-status-{gateway_status}").json()
    done = reached(ann, placed["id"], status, timeout=20)
    assert done["transaction"]["status"] == gateway_status
    assert (done["errors"] == []) == (status in ("paid", "voided"))


def test_a_paid_order_cancelled_before_settlement_is_voided_once_and_live(server, signup, gateway) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-void").json()["id"])
    with Feed(server, ann) as feed:
        feed.subscribe("o", "orders")
        first = ann.post(f"/orders/{paid['id']}/cancel")
        assert first.status_code == 202 and first.json()["status"] == "cancelling"
        again = ann.post(f"/orders/{paid['id']}/cancel")
        assert again.status_code == 202
        statuses = []
        while not statuses or statuses[-1] != "voided":
            statuses.append(feed.event("o", timeout=20)["data"]["status"])
    assert statuses == ["cancelling", "voided"]
    assert gateway.emulator.transactions[paid["transaction"]["id"]]["status"] == "voided"
    done = ann.get(f"/orders/{paid['id']}").json()
    assert done["transaction"]["status"] == "voided" and done["refund"] is None
    assert ann.post(f"/orders/{paid['id']}/cancel").json()["status"] == "voided"  # repeating it is harmless


def test_a_settled_order_cancelled_is_refunded_once(signup, gateway) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-refund").json()["id"])
    assert httpx.post(f"{gateway.url}/__emulator/settle/{paid['transaction']['id']}").status_code == 200
    assert ann.post(f"/orders/{paid['id']}/cancel").status_code == 202
    done = reached(ann, paid["id"], "refunded")
    refunds = credits(gateway, paid["transaction"]["id"])
    assert len(refunds) == 1 and done["refund"] == {"id": refunds[0]["id"], "status": "submitted_for_settlement"}
    assert ann.post(f"/orders/{paid['id']}/cancel").status_code == 202
    assert len(credits(gateway, paid["transaction"]["id"])) == 1


def test_cancel_is_refused_for_orders_never_charged_and_hidden_from_others(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    declined = settled(ann, order(ann, "k-never", "fake-processor-declined-visa-nonce").json()["id"])
    refused = ann.post(f"/orders/{declined['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    paid = settled(ann, order(ann, "k-not-bobs").json()["id"])
    assert bob.post(f"/orders/{paid['id']}/cancel").status_code == 404
    assert bob.post("/orders/not-an-id/cancel").status_code == 400
    assert ann.get(f"/orders/{paid['id']}").json()["status"] == "paid"


@pytest.mark.parametrize("way", ["void", "refund"])
def test_giving_back_survives_a_worker_killed_mid_call_and_happens_once(mongo_url, gateway, server_env, way) -> None:
    env = {**server_env, "PAYMENT_LEASE": "7"}
    name = f"payments_giveback_{way}_{uuid.uuid4().hex[:6]}"
    doomed = Server(mongo_url, name, env=env).start()
    revived: Server | None = None
    try:
        ann = Account.register(doomed.url, "Ann")
        paid = settled(ann, order(ann, f"k-kill-{way}").json()["id"])
        sale = paid["transaction"]["id"]
        if way == "refund":
            httpx.post(f"{gateway.url}/__emulator/settle/{sale}").raise_for_status()
        fault(gateway, call=way, mode="timeout_after", delay=60)
        assert ann.post(f"/orders/{paid['id']}/cancel").status_code == 202
        done_at_gateway = (lambda: credits(gateway, sale)) if way == "refund" else (
            lambda: gateway.emulator.transactions[sale]["status"] == "voided")  # fmt: skip
        wait_for(done_at_gateway, 20, f"the {way} to reach the gateway")
        doomed.kill()  # given back at the gateway, never recorded here
        revived = Server(mongo_url, name, env=env).start()
        ann = Account(base_url=revived.url, headers={"Authorization": f"Bearer {ann.token}"})
        done = reached(ann, paid["id"], "voided" if way == "void" else "refunded", timeout=40)
        assert len(credits(gateway, sale)) == (1 if way == "refund" else 0)
        assert done["history"][-1]["status"] == done["status"]
    finally:
        doomed.kill()
        if revived is not None:
            revived.stop()


def test_a_client_token_while_the_gateway_is_down_is_a_503_with_a_message(signup, gateway) -> None:
    ann = signup()
    fault(gateway, call="client_token", mode="unavailable")
    down = ann.get("/payments/client-token")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "payments_unavailable" and down.json()["error"]["message"]
    fault(gateway, call="client_token", mode="timeout", delay=5)  # past the 2 s deadline
    assert ann.get("/payments/client-token").status_code == 503
    assert ann.get("/payments/client-token").status_code == 200


def test_a_cancelling_order_the_shell_left_without_its_transaction_is_settled_by_the_gateways_record(
    signup, gateway, db
) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-shell-cancel-paid").json()["id"])
    never = settled(ann, order(ann, "k-shell-cancel-never", "fake-luhn-invalid-nonce").json()["id"])
    assert never["status"] == "failed" and never["transaction"] is None
    for placed, transaction in ((paid, "garbage"), (never, None)):
        hand_made = {"status": "cancelling", "transaction": transaction, "give_back_attempts": "x"}
        db.orders.update_one({"_id": ObjectId(placed["id"])}, {"$set": hand_made}, bypass_document_validation=True)
    assert reached(ann, paid["id"], "voided")["transaction"]["id"] == paid["transaction"]["id"]
    assert gateway.emulator.transactions[paid["transaction"]["id"]]["status"] == "voided"
    assert reached(ann, never["id"], "failed")["errors"][0]["code"] == "not_charged"


def test_refusals_a_client_can_cause_at_will_never_queue_for_the_sweep(signup, db) -> None:
    ann = signup()
    for nonce in ("fake-luhn-invalid-nonce", "fake-consumed-nonce", "fake-processor-failure-visa-nonce"):
        failed = settled(ann, order(ann, f"k-queue-{nonce}", nonce).json()["id"])
        assert failed["status"] == "failed"
        assert "reconcile_after" not in db.orders.find_one({"_id": ObjectId(failed["id"])})


def test_an_outage_during_a_cancel_delays_it_but_does_not_end_it(signup, gateway) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-void-outage").json()["id"])
    fault(gateway, call="void", mode="unavailable", count=6)
    assert ann.post(f"/orders/{paid['id']}/cancel").status_code == 202
    assert reached(ann, paid["id"], "voided", timeout=60)["errors"] == []


def test_a_gateway_that_answers_nonsense_makes_client_tokens_503_not_500(mongo_url, server_env) -> None:
    from .harness import free_port

    port = free_port()  # the service itself stands in for a gateway that answers 404 to everything
    env = {**server_env, "BRAINTREE_ENVIRONMENT": f"http://127.0.0.1:{port}"}
    with Server(mongo_url, f"payments_nonsense_{uuid.uuid4().hex[:6]}", env=env, port=port) as server:
        ann = Account.register(server.url, "Ann")
        answer = ann.get("/payments/client-token")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "payments_unavailable"


def signed(payload: bytes) -> dict[str, str]:
    """A webhook form as Braintree would post it: the payload, signed with the test keys."""
    encoded = base64.b64encode(payload).decode()
    digest = Crypto.sha1_hmac_hash(PAYMENT_KEYS["BRAINTREE_PRIVATE_KEY"], encoded)
    return {"bt_signature": f"{PAYMENT_KEYS['BRAINTREE_PUBLIC_KEY']}|{digest}", "bt_payload": encoded}


def transaction_webhook(kind: str, transaction_id: str, order_id: str | None = None) -> dict[str, str]:
    xml = base64.b64decode(signer().webhook_testing.sample_notification(kind, transaction_id)["bt_payload"])
    if order_id is not None:  # Braintree's transaction carries the sale's order id
        xml = xml.replace(
            f"<id>{transaction_id}</id>".encode(),
            f"<id>{transaction_id}</id><order-id>{order_id}</order-id>".encode(),
            1,
        )
    return signed(xml)


def test_a_signed_webhook_the_sdk_cannot_read_is_a_400(anon, gateway) -> None:
    answer = anon.post("/payments/webhooks", data=signed(b"this is not xml"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"


def test_a_webhook_naming_a_failed_order_has_it_looked_up_at_once(signup, gateway, anon, db) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-hook-names").json()["id"])
    sale = paid["transaction"]["id"]
    # Recorded as failed, and not queued for the sweep: only the webhook can bring it back.
    db.orders.update_one({"_id": ObjectId(paid["id"])}, {"$set": {"status": "failed", "transaction": None},
                                                         "$unset": {"reconcile_after": ""}})  # fmt: skip
    kind = braintree.WebhookNotification.Kind.TransactionSettled
    answer = anon.post("/payments/webhooks", data=transaction_webhook(kind, f"{sale}x", paid["id"]))
    assert answer.status_code == 200 and answer.json()["matched"] is True
    done = reached(ann, paid["id"], "paid", timeout=20)
    assert done["transaction"]["id"] == sale and done["history"][-1]["reason"].startswith("reconciled")


def test_a_settlement_declined_webhook_makes_a_paid_order_declined(signup, gateway, anon) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-hook-declined").json()["id"])
    status = {"status": "settlement_declined"}  # what the gateway says, as the webhook reports
    httpx.post(f"{gateway.url}/__emulator/status/{paid['transaction']['id']}", json=status).raise_for_status()
    kind = braintree.WebhookNotification.Kind.TransactionSettlementDeclined
    assert anon.post("/payments/webhooks", data=transaction_webhook(kind, paid["transaction"]["id"])).status_code == 200
    done = ann.get(f"/orders/{paid['id']}").json()
    assert (done["status"], done["transaction"]["status"]) == ("declined", "settlement_declined")
    assert done["history"][-1]["status"] == "declined"


def test_a_second_charge_made_with_a_reusable_payment_method_is_given_back_by_the_sweep(server, signup, gateway):
    """A reusable payment method (a vaulted card, the sandbox's fake-valid-nonce) is not refused on a
    second sale: when the gateway's search hides the first sale past the settle window, the order is sold
    again; the sweep then finds both charges and voids the one the order does not keep."""
    ann = signup()
    search_lag(gateway, 8)  # longer than the settle window (2 s deadline + 1 s)
    fault(gateway, mode="timeout_after", delay=5)  # charged, the answer lost
    placed = order(ann, "k-twice").json()

    def given_back() -> dict | None:
        doc = ann.get(f"/orders/{placed['id']}").json()
        return doc if any("second charge" in entry["reason"] for entry in doc.get("history", [])) else None

    done = wait_for(given_back, 60, "the second charge to be given back")
    made = sales(gateway, placed["id"])
    assert len(made) == 2  # the case this guards against happened
    assert [sale["id"] for sale in made if sale["status"] != "voided"] == [done["transaction"]["id"]]
    assert done["status"] == "paid" and done["history"][-1]["status"] == "paid"
    assert 'murmuration_payment_extra_charges_total{how="voided"}' in httpx.get(f"{server.url}/metrics").text


def test_a_refund_declined_at_settlement_makes_the_order_paid_again_and_a_new_cancel_refunds_it(
    signup, gateway, anon
) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-refund-declined").json()["id"])
    httpx.post(f"{gateway.url}/__emulator/settle/{paid['transaction']['id']}").raise_for_status()
    ann.post(f"/orders/{paid['id']}/cancel")
    first = reached(ann, paid["id"], "refunded")["refund"]["id"]
    httpx.post(f"{gateway.url}/__emulator/status/{first}", json={"status": "settlement_declined"}).raise_for_status()
    kind = braintree.WebhookNotification.Kind.TransactionSettlementDeclined
    answer = anon.post("/payments/webhooks", data=transaction_webhook(kind, first))
    assert answer.status_code == 200 and answer.json()["matched"] is True
    again = ann.get(f"/orders/{paid['id']}").json()
    assert (again["status"], again["errors"][0]["code"]) == ("paid", "refund_failed")
    assert again["refund"] == {"id": first, "status": "settlement_declined"}
    assert again["history"][-1]["status"] == "paid" and first in again["history"][-1]["reason"]
    assert ann.post(f"/orders/{paid['id']}/cancel").status_code == 202
    done = reached(ann, paid["id"], "refunded")
    assert done["refund"]["id"] != first and len(credits(gateway, paid["transaction"]["id"])) == 2


def test_cancelling_an_order_stored_in_a_shape_that_cannot_be_read_is_a_409_that_changes_nothing(signup, db) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-unreadable-cancel").json()["id"])
    db.orders.update_one({"_id": ObjectId(paid["id"])}, {"$set": {"items": "junk"}}, bypass_document_validation=True)
    refused = ann.post(f"/orders/{paid['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    assert db.orders.find_one({"_id": ObjectId(paid["id"])})["status"] == "paid"


@pytest.mark.parametrize("field", ["sale_started_at", "cancel_started_at"])
def test_a_call_start_the_shell_set_in_the_far_future_does_not_hold_an_order_back(signup, gateway, db, field):
    ann = signup()
    paid = settled(ann, order(ann, f"k-future-{field}").json()["id"])
    year_3000 = datetime(3000, 1, 1, tzinfo=UTC)
    if field == "sale_started_at":  # a sale in doubt, found at the gateway once looked up
        hand_made = {"status": "processing", "transaction": None, field: year_3000}
        expected = "paid"
    else:  # a cancel whose void is said to have started in the year 3000
        hand_made = {"status": "cancelling", field: year_3000}
        expected = "voided"
    db.orders.update_one({"_id": ObjectId(paid["id"])}, {"$set": {**hand_made, "next_attempt_at": datetime.now(UTC)}})
    done = reached(ann, paid["id"], expected, timeout=20)
    assert done["transaction"]["id"] == paid["transaction"]["id"]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/json", "text/plain"])
def test_a_webhook_that_is_not_a_urlencoded_form_is_a_400_and_never_parsed(anon, content_type) -> None:
    form = b"bt_signature=a&bt_payload=b"
    answer = anon.post("/payments/webhooks", content=form, headers={"Content-Type": content_type})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"
