"""Payments as a careless operator and a late webhook leave them: the gateway's record still decides,
no charge is given back that should not be, and one order can never stop the others.

The module's server runs with BRAINTREE_TIMEOUT=2, PAYMENT_SETTLE_DELAY=1 and PAYMENT_SWEEP=1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import braintree
import bson
import httpx
from bson import ObjectId
from pymongo.errors import WriteError

from .harness import wait_for

# The same module settings as test_payment_faults: payments through the emulator, reset after each test.
from .test_payment_faults import clean_gateway, fault, reached, search_lag, server_env, transaction_webhook  # noqa: F401
from .test_payments import order, sales, settled

BSON_LIMIT = 16 * 1024 * 1024


def looked_at(db, order_id: str, times: int = 2) -> None:
    """Wait until the sweep has looked at the order `times` times."""

    def looks() -> bool:
        value = db.orders.find_one({"_id": ObjectId(order_id)}).get("reconcile_looks", 0)
        return isinstance(value, int) and value >= times

    wait_for(looks, 30, f"the sweep to look at order {order_id} {times} times")


def grown_to_the_limit(db, order_id: ObjectId, slack: int = 5) -> None:
    """Pad a stored order until it is `slack` bytes under MongoDB's 16 MB, so no update can grow it."""
    for _ in range(5):  # the worker may change the order between the read and the write: measure again
        doc = db.orders.find_one({"_id": order_id})
        doc["pad"] = ""
        pad = "x" * (BSON_LIMIT - slack - len(bson.encode(doc)))
        try:
            db.orders.update_one({"_id": order_id}, {"$set": {"pad": pad}}, bypass_document_validation=True)
            return
        except WriteError:
            continue
    raise AssertionError("the order kept changing: it could not be grown to the limit")


def test_the_sweep_keeps_the_only_charge_of_an_order_whose_transaction_was_cleared(signup, gateway, db) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-op-cleared").json()["id"])
    for transaction in (None, {"id": "zzz"}):
        queued = {"transaction": transaction, "reconcile_looks": 0, "reconcile_after": datetime.now(UTC)}
        db.orders.update_one({"_id": ObjectId(paid["id"])}, {"$set": queued})
        looked_at(db, paid["id"])
        assert gateway.emulator.transactions[paid["transaction"]["id"]]["status"] == "submitted_for_settlement"


def test_a_cancel_never_gives_back_another_customers_charge(signup, gateway, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    mine = settled(ann, order(ann, "k-op-mine").json()["id"])
    bobs = settled(bob, order(bob, "k-op-bobs").json()["id"])
    db.orders.update_one({"_id": ObjectId(mine["id"])}, {"$set": {"transaction.id": bobs["transaction"]["id"]}})
    assert ann.post(f"/orders/{mine['id']}/cancel").status_code == 202
    done = reached(ann, mine["id"], "voided")
    assert done["transaction"]["id"] == mine["transaction"]["id"]  # its own sale, found by its order id
    assert gateway.emulator.transactions[bobs["transaction"]["id"]]["status"] == "submitted_for_settlement"
    assert bob.get(f"/orders/{bobs['id']}").json()["status"] == "paid"


def test_an_order_being_given_back_that_grew_to_16_mb_keeps_its_status_and_leaves_the_queue(
    signup, gateway, db, server
) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-op-huge-cancel").json()["id"])
    fault(gateway, call="void", mode="unavailable", count=50)  # the cancel waits in `cancelling`
    ann.post(f"/orders/{paid['id']}/cancel")
    oid = ObjectId(paid["id"])

    def waiting() -> bool:  # the void was tried, and the order given back to the queue until later
        stored = db.orders.find_one({"_id": oid}, {"pad": 0})
        return stored.get("cancel_started_at") is not None and stored.get("lease_owner") is None

    wait_for(waiting, 20, "the cancel to wait for the gateway")
    grown_to_the_limit(db, oid)
    parked = lambda: db.orders.find_one({"_id": oid}, {"pad": 0})["next_attempt_at"].year == 9999  # noqa: E731
    wait_for(parked, 30, "it to leave the queue")
    stored = db.orders.find_one({"_id": oid}, {"pad": 0})
    assert stored["status"] == "cancelling"  # not `failed`: the customer is still charged
    assert gateway.emulator.transactions[paid["transaction"]["id"]]["status"] == "submitted_for_settlement"
    assert "left out of the payment queue" in server.log_path.read_text()
    assert settled(ann, order(ann, "k-op-after-huge").json()["id"])["status"] == "paid"  # the others go on


def test_an_order_grown_to_16_mb_in_the_sweeps_queue_does_not_stop_the_sweep(signup, gateway, db, server) -> None:
    ann = signup()
    huge = settled(ann, order(ann, "k-op-huge-swept").json()["id"])
    victim = settled(ann, order(ann, "k-op-victim").json()["id"])
    hid, vid = ObjectId(huge["id"]), ObjectId(victim["id"])
    # Grown while not due yet (so the sweep cannot look at it first), then queued: a date for a date.
    next_year = datetime.now(UTC) + timedelta(days=365)
    db.orders.update_one({"_id": hid}, {"$set": {"status": "failed", "reconcile_after": next_year}})
    grown_to_the_limit(db, hid)
    db.orders.update_one({"_id": hid}, {"$set": {"reconcile_after": datetime.now(UTC) - timedelta(hours=1)}})
    db.orders.update_one({"_id": vid}, {"$set": {"status": "failed", "transaction": None,
                                                 "reconcile_after": datetime.now(UTC)}})  # fmt: skip
    assert reached(ann, victim["id"], "paid", timeout=30)["transaction"]["id"] == victim["transaction"]["id"]
    assert "reconcile_after" not in db.orders.find_one({"_id": hid}, {"pad": 0})  # looked at first, it left
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_a_settlement_declined_webhook_the_gateway_contradicts_changes_nothing(signup, gateway, anon) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-op-late-hook").json()["id"])
    sale = paid["transaction"]["id"]
    httpx.post(f"{gateway.url}/__emulator/settle/{sale}").raise_for_status()
    kind = braintree.WebhookNotification.Kind.TransactionSettlementDeclined
    assert anon.post("/payments/webhooks", data=transaction_webhook(kind, sale)).status_code == 200
    done = ann.get(f"/orders/{paid['id']}").json()
    assert (done["status"], done["transaction"]["status"]) == ("paid", "settled")  # the gateway's word


def test_a_webhook_while_the_gateway_is_down_is_a_503_so_braintree_delivers_it_again(signup, gateway, anon) -> None:
    ann = signup()
    paid = settled(ann, order(ann, "k-op-hook-down").json()["id"])
    fault(gateway, call="find", mode="unavailable")
    kind = braintree.WebhookNotification.Kind.TransactionSettled
    answer = anon.post("/payments/webhooks", data=transaction_webhook(kind, paid["transaction"]["id"]))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "payments_unavailable"


def test_a_sale_still_authorizing_that_is_declined_later_is_corrected_by_the_sweep(signup, gateway) -> None:
    ann = signup()
    fault(gateway, mode="status", status="authorizing")
    paid = settled(ann, order(ann, "k-op-authorizing").json()["id"])
    assert (paid["status"], paid["transaction"]["status"]) == ("paid", "authorizing")  # the table says paid
    httpx.post(f"{gateway.url}/__emulator/status/{paid['transaction']['id']}",
               json={"status": "processor_declined"}).raise_for_status()  # fmt: skip
    done = reached(ann, paid["id"], "declined", timeout=30)
    assert done["history"][-1]["reason"].startswith("reconciled: the gateway says")


def test_a_second_charge_whose_void_answer_was_lost_is_still_in_history(signup, gateway, db) -> None:
    ann = signup()
    search_lag(gateway, 6)  # longer than the settle window: the order is sold twice
    fault(gateway, mode="timeout_after", delay=3)
    placed = order(ann, "k-op-lost-void").json()
    wait_for(lambda: len(sales(gateway, placed["id"])) == 2, 30, "the second sale")
    fault(gateway, call="void", mode="timeout_after", delay=3)  # the sweep's void lands, its answer is lost
    first = sales(gateway, placed["id"])[0]["id"]

    def noted() -> dict | None:
        doc = ann.get(f"/orders/{placed['id']}").json()
        return doc if any(first in entry["reason"] for entry in doc["history"]) else None

    done = wait_for(noted, 60, "the second charge given back to be in the order's history")
    assert gateway.emulator.transactions[first]["status"] == "voided" and done["status"] == "paid"


def test_an_amount_edited_in_the_shell_is_not_charged(signup, gateway, db) -> None:
    ann = signup()
    fault(gateway, mode="unavailable", count=2)  # no sale in the first two tries: the edit comes first
    placed = order(ann, "k-op-amount", tee=2).json()  # 2 x 19.99
    db.orders.update_one({"_id": ObjectId(placed["id"])}, {"$set": {"amount": "0.01"}})
    done = settled(ann, placed["id"], timeout=40)
    assert done["status"] == "failed" and done["errors"][0]["code"] == "unchargeable"
    assert sales(gateway, placed["id"]) == []


def test_a_sale_settlement_pending_is_refunded_once_it_settles(signup, gateway) -> None:
    ann = signup()
    fault(gateway, mode="status", status="settlement_pending")
    paid = settled(ann, order(ann, "k-op-pending").json()["id"])
    assert ann.post(f"/orders/{paid['id']}/cancel").json()["status"] == "cancelling"
    httpx.post(f"{gateway.url}/__emulator/settle/{paid['transaction']['id']}").raise_for_status()
    done = reached(ann, paid["id"], "refunded", timeout=40)
    assert done["errors"] == []
