"""The payment worker: every instance charges pending orders in the background, exactly once.

An order is claimed with a lease in MongoDB, so two workers never process it at once. Before the
sale, the order is marked `sale_attempted`; an order claimed again with that mark (a crash, a
timeout, a restart between "charged" and "recorded") is first looked up at the gateway by our order
id, so it is never charged twice. The lease is longer than a gateway call can take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ..config import Settings
from ..database import ASCENDING, Database, DatabaseError, Document, OperationFailure, ReturnDocument, now, transient
from ..metrics import PAYMENTS
from .catalog import CENT, Catalog
from .gateway import Charge, Gateway, GatewayUnavailable, Refusal

log = logging.getLogger("murmuration.payments")

MAX_BACKOFF = 60.0


class LeaseLost(Exception):
    """Another worker owns the order now; this one must not touch it."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # paid | declined | failed
    transaction: dict[str, str] | None
    errors: list[dict[str, str]] = field(default_factory=list)


def outcome_of(charge: Charge) -> Outcome:
    """What a gateway transaction means for its order."""
    transaction = {"id": charge.id, "status": charge.status}
    if charge.succeeded:
        return Outcome("paid", transaction)
    if charge.status in ("processor_declined", "gateway_rejected"):
        code = charge.code or charge.status
        message = charge.text or f"{charge.status.replace('_', ' ')}: {charge.code}"
        return Outcome("declined", transaction, [{"code": str(code), "message": message}])
    return Outcome(
        "failed", transaction, [{"code": str(charge.code or charge.status), "message": charge.text or charge.status}]
    )


def unchargeable(order: Document, catalog: Catalog) -> str | None:
    """Why a stored order cannot be sent to the gateway (hand-made, or written by another version),
    or None. Checked before a new sale only: an order already sent is looked up first, whatever it holds."""
    nonce = order.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        return "the order has no payment method nonce"
    if _amount(order) is None:
        return "the order's amount is not a positive amount with two decimals"
    items = order.get("items")
    if not isinstance(items, list) or not items:
        return "the order has no items"
    for line in items:
        sku = line.get("sku") if isinstance(line, dict) else None
        if not isinstance(sku, str) or sku not in catalog.items:
            return "the order has an item that is not in the catalog"
        quantity = line.get("quantity")
        # A whole number, as we write it or as the shell does (its 2 is the double 2.0).
        if not ((type(quantity) is int or (type(quantity) is float and quantity.is_integer())) and quantity >= 1):
            return "the order has an item without a whole positive quantity"
    return None


def _amount(order: Document) -> Decimal | None:
    raw = order.get("amount")
    try:
        amount = Decimal(raw) if isinstance(raw, str) else None
    except InvalidOperation:
        return None
    if amount is None or not amount.is_finite() or amount <= 0 or amount != amount.quantize(CENT):
        return None
    return amount


class Payments:
    def __init__(self, db: Database, gateway: Gateway, settings: Settings, owner: str, catalog: Catalog) -> None:
        self.db = db
        self.gateway = gateway
        self.catalog = catalog
        self.owner = owner
        self.lease = timedelta(seconds=settings.payment_lease)
        self.poll = settings.payment_poll
        self.loops = settings.payment_workers
        self.wake = asyncio.Event()
        self.stopping = False
        self.deadline: float | None = None

    def nudge(self) -> None:
        """A new order was stored: look for work now instead of at the next poll."""
        self.wake.set()

    def finish_up(self, grace: float) -> float:
        """Stop claiming: each loop ends once the order in hand is done. Returns the seconds left of
        `grace`, counted from the first call."""
        if self.deadline is None:
            self.deadline = time.monotonic() + grace
        self.stopping = True
        self.wake.set()
        return max(0.0, self.deadline - time.monotonic())

    async def release(self) -> None:
        """Give back the leases of orders claimed but not yet sent to the gateway."""
        with contextlib.suppress(DatabaseError):
            await self.db.orders.update_many(
                {"lease_owner": self.owner, "sale_attempted": False},
                {"$set": {"lease_owner": None, "lease_until": None}},
            )

    async def run(self) -> None:
        """One payment loop: claim, charge, record, until `finish_up`. No order can stop it: one that
        MongoDB refuses to update is failed, an unexpected error is logged and tried again later."""
        while not self.stopping:
            try:
                order = await self.claim()
            except DatabaseError as error:
                log.warning("cannot claim orders: %s", type(error).__name__)
                await asyncio.sleep(self.poll)
                continue
            if order is None:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll)
                continue
            await self._attempt(order)

    async def _attempt(self, order: Document) -> None:
        try:
            await self.process(order)
        except OperationFailure as error:
            if transient(error) or order.get("sale_attempted"):  # a sale may exist: looked up next time
                log.warning("order %s left for a later attempt: %s", order["_id"], type(error).__name__)
            else:
                await self._give_up(order["_id"], f"MongoDB refuses to update the stored order (code {error.code})")
        except (DatabaseError, LeaseLost) as error:
            log.warning("order %s left for a later attempt: %s", order["_id"], type(error).__name__)
        except Exception:
            log.exception("order %s: unexpected failure; it is tried again later", order["_id"])
            with contextlib.suppress(DatabaseError):
                await self._retry_later(order)

    async def claim(self) -> Document | None:
        """The next due order, leased to this worker. Found first, then claimed by id: an order MongoDB
        refuses to update (grown near 16 MB in the shell) is failed instead of blocking the queue."""
        stamp = now()
        due: Document = {
            "status": {"$in": ["pending", "processing"]},
            "next_attempt_at": {"$lte": stamp},
            "$or": [{"lease_until": None}, {"lease_until": {"$lt": stamp}}],
        }
        candidate = await self.db.orders.find_one(due, {"_id": 1}, sort=[("next_attempt_at", ASCENDING)])
        if candidate is None:
            return None
        try:
            doc: Document | None = await self.db.orders.find_one_and_update(
                {**due, "_id": candidate["_id"]},
                # A pipeline: `attempts` written by hand as a string must not make the claim fail.
                [
                    {
                        "$set": {
                            "status": "processing",
                            "lease_owner": self.owner,
                            "lease_until": stamp + self.lease,
                            "updated_at": stamp,
                            "attempts": {
                                "$add": [
                                    {"$convert": {"input": "$attempts", "to": "long", "onError": 0, "onNull": 0}},
                                    1,
                                ]
                            },
                        }
                    }
                ],
                return_document=ReturnDocument.AFTER,
            )
        except OperationFailure as error:
            if transient(error):
                raise
            await self._give_up(candidate["_id"], f"MongoDB refuses to update the stored order (code {error.code})")
            return None
        return doc

    async def _give_up(self, order_id: Any, why: str) -> None:
        """Fail an order that cannot be processed as stored; if even that write is refused (a document
        at 16 MB), the smallest change that takes it out of the queue: its status."""
        log.error("order %s failed: %s", order_id, why)
        fields = {"status": "failed", "errors": [{"code": "unprocessable", "message": why}],
                  "lease_owner": None, "lease_until": None}  # fmt: skip
        try:
            await self.db.orders.update_one({"_id": order_id}, {"$set": fields})
        except OperationFailure:
            await self.db.orders.update_one({"_id": order_id}, {"$set": {"status": "failed"}})
        PAYMENTS.labels("failed").inc()

    async def process(self, order: Document) -> None:
        try:
            outcome = await self.charge(order)
        except GatewayUnavailable:
            await self._retry_later(order)
            return
        await self._finish(order, outcome)

    async def charge(self, order: Document) -> Outcome:
        order_id = str(order["_id"])
        if order.get("sale_attempted"):
            earlier = await self.gateway.find_by_order(order_id)
            if earlier:
                chosen = next((charge for charge in earlier if charge.succeeded), earlier[-1])
                log.info("order %s was charged before its outcome was recorded: adopting %s", order_id, chosen.id)
                return await self.confirm(order, chosen)
        problem = unchargeable(order, self.catalog)
        if problem is not None:
            log.warning("order %s cannot be charged (%s): it fails", order_id, problem)
            return Outcome("failed", None, [{"code": "unchargeable", "message": problem}])
        marked = await self.db.orders.update_one(
            {"_id": order["_id"], "lease_owner": self.owner}, {"$set": {"sale_attempted": True}}
        )
        if marked.matched_count == 0:
            raise LeaseLost()
        order["sale_attempted"] = True
        result = await self.gateway.sale(order_id, _amount(order) or Decimal(0), order["nonce"])
        if isinstance(result, Refusal):
            return Outcome("failed", None, result.errors)
        return await self.confirm(order, result)

    async def confirm(self, order: Document, charge: Charge) -> Outcome:
        """Read the transaction back and check it charged exactly the order's amount."""
        if not charge.succeeded:
            return outcome_of(charge)
        found = await self.gateway.find(charge.id) or charge
        outcome = outcome_of(found)
        if outcome.status == "paid" and found.amount != _amount(order):
            log.error(
                "order %s: gateway charged %s instead of %s; voiding", order["_id"], found.amount, order.get("amount")
            )
            voided = await self.gateway.void(found.id)
            status = voided.status if isinstance(voided, Charge) else found.status
            message = f"the gateway charged {found.amount} instead of {order.get('amount')}"
            return Outcome(
                "failed", {"id": found.id, "status": status}, [{"code": "amount_mismatch", "message": message}]
            )
        return outcome

    async def _finish(self, order: Document, outcome: Outcome) -> None:
        mine = {"_id": order["_id"], "lease_owner": self.owner}
        update = {
            "$set": {
                "status": outcome.status,
                "transaction": outcome.transaction,
                "errors": outcome.errors,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now(),
            },
            "$unset": {"nonce": ""},  # single-use, and no longer needed
        }
        try:
            result = await self.db.orders.update_one(mine, update)
        except OperationFailure as error:
            if transient(error):
                raise
            # The stored order cannot take the outcome (grown near 16 MB by hand): its status at least,
            # which is what the customer and the queue need.
            log.error("order %s: only its status could be recorded (%s)", order["_id"], outcome.status)
            update = {"$set": {"status": outcome.status, "lease_owner": None, "lease_until": None}}
            result = await self.db.orders.update_one(mine, update)
        if result.matched_count == 0:
            raise LeaseLost()
        PAYMENTS.labels(outcome.status).inc()

    async def _retry_later(self, order: Document) -> None:
        attempts = order.get("attempts")
        delay = min(MAX_BACKOFF, 0.5 * 2 ** min(attempts if isinstance(attempts, int) else 1, 8))
        await self.db.orders.update_one(
            {"_id": order["_id"], "lease_owner": self.owner},
            {"$set": {"lease_owner": None, "lease_until": None, "next_attempt_at": now() + timedelta(seconds=delay)}},
        )
