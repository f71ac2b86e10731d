"""What the gateway's record means for an order: one table, and pure decisions over it (no I/O).

An order's `status` says where the money is: `pending` / `processing` (not decided yet), `paid`
(taken), `declined` / `failed` (never taken), `cancelling` (being given back), `voided` / `refunded`
(given back). Every change of status is recorded on the order with its reason (`history`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

# Braintree's transaction statuses (Transaction.Status) and the order status each means.
GATEWAY_STATUS: dict[str, str] = {
    "authorizing": "paid",
    "authorized": "paid",
    "submitted_for_settlement": "paid",
    "settling": "paid",
    "settlement_pending": "paid",
    "settled": "paid",
    "settlement_confirmed": "paid",
    "processor_declined": "declined",
    "gateway_rejected": "declined",
    "settlement_declined": "declined",
    "failed": "failed",
    "settlement_failed": "failed",
    "authorization_expired": "failed",
    "voided": "voided",
}

# A sale in these statuses is given back by a void; once settling or settled, by a refund. A card sale
# `settlement_pending` can be neither (Braintree voids it only for PayPal) until it settles: it waits,
# like one still `authorizing`.
VOIDABLE = frozenset({"authorized", "submitted_for_settlement"})
REFUNDABLE = frozenset({"settling", "settled", "settlement_confirmed"})
WAITING = frozenset({"authorizing", "settlement_pending"})

# What a worker picks up: orders to charge, and orders to give back.
QUEUED = ("pending", "processing", "cancelling")

HISTORY_KEPT = 50  # entries of `history` kept on an order (the oldest go first)


def meaning(gateway_status: str) -> str:
    """The order status a gateway transaction status means; an unknown one is a failure (logged by
    the caller): it never counts as money taken."""
    return GATEWAY_STATUS.get(gateway_status, "failed")


def is_charge(gateway_status: str) -> bool:
    return meaning(gateway_status) == "paid"


@dataclass(frozen=True, slots=True)
class Record:
    """A transaction as the gateway keeps it, as much of it as orders need."""

    id: str
    kind: str  # sale | credit
    status: str
    amount: Decimal
    refunds: tuple[str, ...] = ()  # ids of the credits that refund this sale
    refunded: str | None = None  # for a credit: the sale it refunds
    order_id: str | None = None  # the order id the transaction carries (ours, for our sales)
    code: str | None = None  # processor response code, or the gateway's rejection reason
    text: str | None = None

    @property
    def charged(self) -> bool:
        return is_charge(self.status)


def chosen_sale(records: list[Record]) -> Record | None:
    """The sale that decides an order: the first that took money if any (a second one, made after an
    uncertain first with a reusable payment method, is given back by the sweep), else the latest attempt."""
    sales = [record for record in records if record.kind == "sale"]
    return next((sale for sale in sales if is_charge(sale.status) or sale.status == "voided"), None) or (
        sales[-1] if sales else None
    )


def standing_refunds(sale: Record, records: list[Record]) -> list[str]:
    """The ids of the refunds of `sale` that gave money back. A refund `records` shows as failed
    (declined at settlement, rejected, voided) did not and is left out; one it does not show is taken
    to stand."""
    known = {record.id: record for record in records}
    credits = set(sale.refunds) | {record.id for record in records if record.refunded == sale.id}
    return sorted(credit for credit in credits if credit not in known or is_charge(known[credit].status))


def truth(sale: Record, records: list[Record]) -> str:
    """The order status the gateway's record of a sale (and its refunds) says."""
    if is_charge(sale.status) and standing_refunds(sale, records):
        return "refunded"
    return meaning(sale.status)


def extra_charges(records: list[Record], kept: str | None) -> list[Record]:
    """The sales that took money for an order besides the one it keeps (`kept`): each is a second
    charge, to be given back."""
    return [
        record for record in records if record.kind == "sale" and record.id != kept and truth(record, records) == "paid"
    ]


def settles_at(started: Any, window: timedelta, stamp: datetime) -> datetime | None:
    """When a gateway call started at `started` can no longer create anything unseen: its deadline plus
    the time the gateway's search takes to show what it created (`window`). None when it never started,
    or when the recorded start is later than any clock skew explains (a hand edit): that is not waited
    for, or an order would wait for a date in the year 3000."""
    if not isinstance(started, datetime) or started > stamp + window:
        return None
    return started + window


def counted(key: str) -> dict[str, Any]:
    """`key` plus one, as an aggregation expression: a count the shell left as a string or null starts from 0."""
    return {"$add": [{"$convert": {"input": f"${key}", "to": "long", "onError": 0, "onNull": 0}}, 1]}


def appended(status: str, at: datetime, reason: str) -> dict[str, Any]:
    """`history` with one more entry, as an aggregation expression, bounded. `status` is one of ours, or
    `"$status"` for the order's stored one (an event that does not change it). A `history` the shell
    left as anything but an array is started again instead of making the update fail."""
    kept = {"$cond": [{"$isArray": "$history"}, "$history", []]}
    entry = {"status": status, "at": {"$literal": at}, "reason": {"$literal": reason}}
    return {"$slice": [{"$concatArrays": [kept, [entry]]}, -HISTORY_KEPT]}


def change(fields: dict[str, Any], at: datetime, reason: str) -> list[dict[str, Any]]:
    """An update pipeline setting `fields` (one of them `status`) and recording the change in
    `history`. Every value is literal: no text (a gateway's message) is ever read as an expression."""
    return [
        {"$set": {"history": appended(fields["status"], at, reason)}},
        {"$set": {key: {"$literal": value} for key, value in {**fields, "updated_at": at}.items()}},
    ]
