"""The payment worker: every instance charges and gives back orders in the background, exactly once.

An order is claimed with a lease in MongoDB, so two workers never act on it at once; the lease is
renewed while a gateway call is in flight, and every call has a total deadline shorter than the
lease. Before a sale (or a void or refund) the order records that the call started. An order claimed
again after an uncertain call (a deadline, a lost answer, a crash) is first looked up at the gateway,
and nothing is repeated until the gateway's record is conclusive: the call's deadline plus
`PAYMENT_SETTLE_DELAY`, the time Braintree's search takes to show a new transaction. A sale refused
as a reuse of its nonce (93107) after an uncertain one means the first went through: the order waits
for the gateway to show it (`PAYMENT_UNCERTAIN_FOR` at most, then `failed`, and the sweep keeps
looking for a week). The sweep (`sweep`) compares failed orders that attempted a sale with the
gateway's record and corrects them; every correction is in the order's `history`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from ..config import Settings
from ..database import ASCENDING, Database, DatabaseError, Document, OperationFailure, ReturnDocument, now, transient
from ..metrics import PAYMENT_CORRECTIONS, PAYMENT_EXTRA_CHARGES, PAYMENTS
from .catalog import CENT, Catalog
from .gateway import Gateway, GatewayUnavailable, Refusal
from .states import (
    QUEUED,
    REFUNDABLE,
    VOIDABLE,
    WAITING,
    Record,
    appended,
    change,
    chosen_sale,
    counted,
    extra_charges,
    meaning,
    settles_at,
    standing_refunds,
    truth,
)

log = logging.getLogger("murmuration.payments")
T = TypeVar("T")

MAX_BACKOFF = 60.0
PARKED = datetime(9999, 1, 1, tzinfo=UTC)  # the next attempt of an order left out of the queue for an operator
MAX_WAIT = 3600.0  # the longest wait between two looks at a sale still authorizing or settlement_pending
MAX_GIVE_BACK_ATTEMPTS = 5  # voids/refunds refused in a row before the order goes back to `paid`
SWEEP_BATCH = 50  # orders one sweep looks up at most (a bound on gateway searches)
MAX_SWEEP_INTERVAL = timedelta(hours=12)  # the longest wait between two looks at one order
MAX_CREDITS_READ = 5  # refunds of one sale read back to know which stand (a sale has one or two)
EXTRA_CHARGES_KEPT = 20  # entries of `extra_charges` kept on an order
# Statuses the sweep looks at: a failed or declined order may hide a charge; any decided order sold
# more than once may hide a second one.
SWEPT = ("failed", "declined", "paid", "cancelling", "voided", "refunded")


class LeaseLost(Exception):
    """Another worker owns the order now; this one must not touch it."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # paid | declined | failed | voided
    transaction: dict[str, str] | None
    errors: list[dict[str, str]] = field(default_factory=list)


def outcome_of(record: Record) -> Outcome:
    """What a gateway sale means for its order."""
    transaction = {"id": record.id, "status": record.status}
    status = meaning(record.status)
    if status in ("paid", "voided"):
        return Outcome(status, transaction)
    if record.status not in ("processor_declined", "gateway_rejected", "settlement_declined", "failed"):
        log.error("transaction %s has a status this service does not know: %r", record.id, record.status)
    code = record.code or record.status
    message = record.text or f"{record.status.replace('_', ' ')}: {code}"
    return Outcome(status, transaction, [{"code": str(code), "message": message}])


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
    total = Decimal(0)
    for line in items:
        sku = line.get("sku") if isinstance(line, dict) else None
        if not isinstance(sku, str) or sku not in catalog.items:
            return "the order has an item that is not in the catalog"
        quantity = line.get("quantity")
        # A whole number, as we write it or as the shell does (its 2 is the double 2.0).
        if not ((type(quantity) is int or (type(quantity) is float and quantity.is_integer())) and quantity >= 1):
            return "the order has an item without a whole positive quantity"
        price, line_total = _money(line.get("price")), _money(line.get("total"))
        if price is None or line_total is None or line_total != price * int(quantity):
            return "the order has an item whose total is not its price times its quantity"
        total += line_total
    # What is charged is what the items say: an amount edited on its own (in the shell) is not.
    if total != _amount(order):
        return "the order's amount is not the sum of its items"
    return None


def _money(raw: Any) -> Decimal | None:
    """A stored sum of money (`"12.50"`): a finite decimal with at most two places, or None."""
    try:
        value = Decimal(raw) if isinstance(raw, str) else None
    except InvalidOperation:
        return None
    return value if value is not None and value.is_finite() and value == value.quantize(CENT) else None


def _amount(order: Document) -> Decimal | None:
    amount = _money(order.get("amount"))
    return amount if amount is not None and amount > 0 else None


def _transaction_id(order: Document) -> str | None:
    transaction = order.get("transaction")
    found = transaction.get("id") if isinstance(transaction, dict) else None
    return found if isinstance(found, str) and found else None


def _count(order: Document, key: str) -> int:
    value = order.get(key)
    return value if type(value) is int and value >= 0 else 0


def _backoff(attempts: int, most: float = MAX_BACKOFF) -> timedelta:
    return timedelta(seconds=min(most, 0.5 * 2 ** min(max(attempts, 1), 16)))


class Payments:
    def __init__(self, db: Database, gateway: Gateway, settings: Settings, owner: str, catalog: Catalog) -> None:
        self.db = db
        self.gateway = gateway
        self.catalog = catalog
        self.owner = owner
        self.lease = timedelta(seconds=settings.payment_lease)
        self.timeout = settings.braintree_timeout
        self.settle_delay = settings.payment_settle_delay
        # How long after a call started the gateway's record of it is conclusive.
        self.window = timedelta(seconds=settings.braintree_timeout + settings.payment_settle_delay)
        self.uncertain_for = timedelta(seconds=settings.payment_uncertain_for)
        self.sweep_every = settings.payment_sweep
        self.sweep_days = settings.payment_sweep_days
        self.poll = settings.payment_poll
        self.loops = settings.payment_workers
        self.wake = asyncio.Event()
        self.sweep_wake = asyncio.Event()
        self.stopping = False
        self.deadline: float | None = None
        self.in_flight: set[Any] = set()  # ids of orders with a gateway call under way

    def nudge(self) -> None:
        """A new order was stored (or one cancelled): look for work now instead of at the next poll."""
        self.wake.set()

    def nudge_sweep(self) -> None:
        """A webhook named an order that may need correcting: sweep now."""
        self.sweep_wake.set()

    def finish_up(self, grace: float) -> float:
        """Stop claiming: each loop ends once the order in hand is done. Returns the seconds left of
        `grace`, counted from the first call."""
        if self.deadline is None:
            self.deadline = time.monotonic() + grace
        self.stopping = True
        self.wake.set()
        self.sweep_wake.set()
        return max(0.0, self.deadline - time.monotonic())

    async def release(self) -> None:
        """Give back the leases of orders claimed but with no gateway call under way."""
        with contextlib.suppress(DatabaseError):
            await self.db.orders.update_many(
                {"lease_owner": self.owner, "_id": {"$nin": list(self.in_flight)}},
                {"$set": {"lease_owner": None, "lease_until": None}},
            )

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """One payment loop: claim, act, record, until `finish_up`. No order can stop it: one that
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
        except GatewayUnavailable as error:  # a lookup failed: looking up again is always safe
            log.warning("order %s left for a later attempt: %s", order["_id"], error)
            with contextlib.suppress(DatabaseError):
                await self._postpone(order, self._later(order))
        except OperationFailure as error:
            if transient(error) or order.get("sale_attempted"):  # a sale may exist: looked up next time
                log.warning("order %s left for a later attempt: %s", order["_id"], type(error).__name__)
            else:
                await self._give_up(order, f"MongoDB refuses to update the stored order (code {error.code})")
        except (DatabaseError, LeaseLost) as error:
            log.warning("order %s left for a later attempt: %s", order["_id"], type(error).__name__)
        except Exception:
            log.exception("order %s: unexpected failure; it is tried again later", order["_id"])
            with contextlib.suppress(DatabaseError):
                await self._postpone(order, self._later(order))

    async def claim(self) -> Document | None:
        """The next due order, leased to this worker. Found first, then claimed by id: an order MongoDB
        refuses to update (grown near 16 MB in the shell) is failed instead of blocking the queue."""
        stamp = now()
        due: Document = {
            "status": {"$in": list(QUEUED)},
            "next_attempt_at": {"$lte": stamp},
            "$or": [{"lease_until": None}, {"lease_until": {"$lt": stamp}}],
        }
        candidate = await self.db.orders.find_one(
            due, {"_id": 1, "status": 1, "sale_attempted": 1}, sort=[("next_attempt_at", ASCENDING)]
        )
        if candidate is None:
            return None
        pending = {"$eq": ["$status", "pending"]}
        claimed = appended("processing", stamp, "claimed by a payment worker")
        try:
            doc: Document | None = await self.db.orders.find_one_and_update(
                {**due, "_id": candidate["_id"]},
                # A pipeline: `attempts` written by hand as a string must not make the claim fail.
                [
                    {
                        "$set": {
                            # Both read the stored status: a pending order becomes processing, in history too.
                            "history": {"$cond": [pending, claimed, "$history"]},
                            "status": {"$cond": [pending, "processing", "$status"]},
                            "lease_owner": self.owner,
                            "lease_until": stamp + self.lease,
                            "updated_at": stamp,
                            "attempts": counted("attempts"),
                        }
                    }
                ],
                return_document=ReturnDocument.AFTER,
            )
        except OperationFailure as error:
            if transient(error):
                raise
            await self._give_up(candidate, f"MongoDB refuses to update the stored order (code {error.code})")
            return None
        return doc

    async def process(self, order: Document) -> None:
        if order.get("status") == "cancelling":
            await self.give_back(order)
        else:
            await self.charge(order)

    # --- charging ----------------------------------------------------------------------------

    async def charge(self, order: Document) -> None:
        order_id = str(order["_id"])
        if order.get("sale_attempted") and not await self._after_uncertain_sale(order):
            return
        problem = unchargeable(order, self.catalog)
        if problem is not None:
            log.warning("order %s cannot be charged (%s): it fails", order_id, problem)
            failed = Outcome("failed", None, [{"code": "unchargeable", "message": problem}])
            await self._finish(order, failed, f"cannot be charged as stored: {problem}")
            return
        again = bool(order.get("sale_attempted"))
        started = now()
        # `sales_made` counts the sales sent: an order sold twice is looked at by the sweep for a
        # second charge, which a reusable payment method makes possible.
        await self._mark(order, [{"$set": {"sale_attempted": True, "sale_started_at": started,
                                           "first_sale_at": {"$ifNull": ["$first_sale_at", started]},
                                           "sales_made": counted("sales_made")}}])  # fmt: skip
        order["sales_made"] = _count(order, "sales_made") + 1
        try:
            result = await self._holding(order, self.gateway.sale(order_id, _amount(order) or Decimal(0),
                                                                   order["nonce"]))  # fmt: skip
        except GatewayUnavailable as error:
            if error.sent:
                log.warning("order %s: the sale's outcome is unknown (%s); it is looked up later", order_id, error)
                await self._postpone(order, started + self.window)
            else:
                await self._postpone(order, self._later(order), sale_attempted=again)
            return
        if isinstance(result, Refusal):
            if again and result.has("93107"):
                # The nonce was used: by this order's earlier sale, which the gateway's search does
                # not show yet. Never "failed" on that alone: the order waits for the sale to show.
                log.warning("order %s: its nonce was used by an earlier sale; waiting for the gateway", order_id)
                await self._postpone(order, now() + timedelta(seconds=max(self.settle_delay, 1.0)), nonce_consumed=True)
                return
            await self._finish(order, Outcome("failed", None, result.errors), "refused by the gateway")
            return
        await self._finish(order, await self.confirm(order, result), "the gateway's answer to the sale")

    async def _after_uncertain_sale(self, order: Document) -> bool:
        """An order whose earlier sale may exist: adopt it if the gateway shows it, else wait until
        its record is conclusive. True when a new sale may be made."""
        records = await self.gateway.records(str(order["_id"]))
        sale = chosen_sale(records)
        if sale is not None:
            log.info("order %s: adopting transaction %s found at the gateway", order["_id"], sale.id)
            outcome = await self.confirm(order, sale)
            await self._finish(order, outcome, f"transaction {sale.id} found at the gateway after an interrupted sale")
            return False
        stamp = now()
        conclusive = settles_at(order.get("sale_started_at"), self.window, stamp)
        if conclusive is not None and stamp < conclusive:
            await self._postpone(order, conclusive)
            return False
        if not order.get("nonce_consumed"):
            return True
        first = order.get("first_sale_at") or order.get("sale_started_at")
        if isinstance(first, datetime) and stamp - first < self.uncertain_for:
            await self._postpone(order, stamp + _backoff(_count(order, "attempts")))
            return False
        message = "the payment method was used, but the gateway shows no transaction for this order"
        unconfirmed = Outcome("failed", None, [{"code": "unconfirmed", "message": message}])
        await self._finish(order, unconfirmed, f"{message}; the sweep keeps looking for {self.sweep_days} days",
                           extra={"reconcile_after": stamp})  # fmt: skip
        return False

    async def confirm(self, order: Document, sale: Record) -> Outcome:
        """Read the transaction back and check it charged exactly the order's amount."""
        if not sale.charged:
            return outcome_of(sale)
        found = await self.gateway.find(sale.id) or sale
        outcome = outcome_of(found)
        if outcome.status == "paid" and found.amount != _amount(order):
            log.error(
                "order %s: gateway charged %s instead of %s; voiding", order["_id"], found.amount, order.get("amount")
            )
            voided = await self.gateway.void(found.id)
            status = voided.status if isinstance(voided, Record) else found.status
            message = f"the gateway charged {found.amount} instead of {order.get('amount')}"
            return Outcome(
                "failed", {"id": found.id, "status": status}, [{"code": "amount_mismatch", "message": message}]
            )
        return outcome

    # --- giving back ---------------------------------------------------------------------------

    async def give_back(self, order: Document) -> None:
        """Void a charge not yet settled, refund a settled one: once, whatever was interrupted."""
        stamp = now()
        conclusive = settles_at(order.get("cancel_started_at"), self.window, stamp)
        if conclusive is not None and stamp < conclusive:
            await self._postpone(order, conclusive)  # an earlier void or refund may still land
            return
        sale = await self._own_sale(order)
        if sale is None:
            return
        transaction_id = sale.id
        if await self._given_back(order, sale):
            return
        tries = _count(order, "give_back_attempts")
        if tries >= MAX_GIVE_BACK_ATTEMPTS:
            await self._keep_paid(order, f"transaction {transaction_id} ({sale.status}) could not be given back")
            return
        if sale.status in WAITING:  # it can be given back once it moves on, which may take days
            await self._postpone(order, stamp + _backoff(_count(order, "attempts"), MAX_WAIT))
            return
        await self._mark(order, [{"$set": {"cancel_started_at": stamp}}])
        call = self.gateway.void if sale.status in VOIDABLE else self.gateway.refund
        try:
            result = await self._holding(order, call(transaction_id))
        except GatewayUnavailable as error:
            if error.sent:
                await self._postpone(order, stamp + self.window)
            else:
                await self._postpone(order, now() + _backoff(tries + 1), cancel_started_at=None)
            return
        if isinstance(result, Refusal):
            # The sale moved meanwhile (settled before the void, ...): the next pass looks again.
            log.warning("order %s: giving back %s was refused: %s", order["_id"], transaction_id, result.errors)
            # Only refusals count toward giving up: an outage, however long, just delays the cancel.
            await self._postpone(order, now() + _backoff(tries + 1), cancel_started_at=None,
                                 give_back_attempts=tries + 1)  # fmt: skip
            return
        if not await self._given_back(order, await self.gateway.find(transaction_id) or sale):
            await self._postpone(order, now())

    async def _own_sale(self, order: Document) -> Record | None:
        """The sale to give back: the order's transaction, read by id, if it is this order's. One the
        order has lost, or that belongs to another order (a hand edit), is not touched: the gateway's
        sale for our order id is used instead; with none there, the order was never charged and says so."""
        sale = await self._recorded_sale(order)
        if sale is not None:
            return sale
        found = chosen_sale(await self.gateway.records(str(order["_id"])))
        if found is not None:
            return await self.gateway.find(found.id) or found
        reason = "the gateway has no sale for this order: there is nothing to give back"
        await self._finish(order, Outcome("failed", None, [{"code": "not_charged", "message": reason}]), reason)
        return None

    async def _recorded_sale(self, order: Document) -> Record | None:
        """The order's transaction, read by id (consistently), if it is a sale made for this order; one
        that is not (a hand edit naming another order's sale, or a refund) is left alone, and said so."""
        recorded = _transaction_id(order)
        sale = await self.gateway.find(recorded) if recorded else None
        if sale is None or (sale.kind == "sale" and sale.order_id == str(order["_id"])):
            return sale
        log.error("order %s names transaction %s (a %s of order %s), which is not its own sale: it is left alone",
                  order["_id"], sale.id, sale.kind, sale.order_id)  # fmt: skip
        return None

    async def _given_back(self, order: Document, sale: Record) -> bool:
        """Record what the gateway says of a sale being given back, once it is settled one way or the
        other: refunded, voided, or never charged after all. False while it is still charged (a refund
        that failed, declined at settlement, gave nothing back: the sale is refunded again)."""
        credits = [await self.gateway.find(credit) for credit in sale.refunds[:MAX_CREDITS_READ]]
        known = [credit for credit in credits if credit is not None]
        status = truth(sale, known)
        transaction = {"id": sale.id, "status": sale.status}
        if status == "refunded":
            refund_id = standing_refunds(sale, known)[0]
            credit = next((found for found in known if found.id == refund_id), None)
            refund = {"id": refund_id, "status": credit.status if credit else "unknown"}
            await self._finish(order, Outcome("refunded", transaction), f"refunded by transaction {refund_id}",
                               refund)  # fmt: skip
            return True
        if status == "paid":
            return False
        reason = "voided at the gateway" if status == "voided" else f"the gateway says the sale is {sale.status}"
        await self._finish(order, Outcome(status, transaction), reason)
        return True

    async def _keep_paid(self, order: Document, why: str) -> None:
        log.error("order %s cannot be given back: %s", order["_id"], why)
        errors = [{"code": "cancel_refused", "message": why}]
        await self._mark(order, change({"status": "paid", "errors": errors, "cancel_started_at": None,
                                         "lease_owner": None, "lease_until": None}, now(), why))  # fmt: skip

    # --- recording -----------------------------------------------------------------------------

    async def _holding(self, order: Document, call: Awaitable[T]) -> T:
        """Run a gateway call while renewing the order's lease, so it cannot lapse while the call
        is in flight (the call's own deadline is shorter than the lease anyway)."""
        done = asyncio.Event()
        renewer = asyncio.create_task(self._renew(order["_id"], done))
        self.in_flight.add(order["_id"])
        try:
            return await call
        finally:
            self.in_flight.discard(order["_id"])
            done.set()  # the renewer ends between writes: a write is never cancelled halfway
            await renewer

    async def _renew(self, order_id: Any, done: asyncio.Event) -> None:
        every = self.lease.total_seconds() / 3
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)
            if done.is_set():
                return
            try:
                renewed = await self.db.orders.update_one(
                    {"_id": order_id, "lease_owner": self.owner}, {"$set": {"lease_until": now() + self.lease}}
                )
            except DatabaseError as error:
                log.warning("order %s: cannot renew its lease: %s", order_id, type(error).__name__)
                continue
            if renewed.matched_count == 0:
                log.error("order %s: its lease was lost during a gateway call", order_id)
                return

    async def _mark(self, order: Document, pipeline: list[Document]) -> None:
        """Update an order this worker holds; LeaseLost if it does not any more."""
        marked = await self.db.orders.update_one({"_id": order["_id"], "lease_owner": self.owner}, pipeline)
        if marked.matched_count == 0:
            raise LeaseLost()

    async def _finish(self, order: Document, outcome: Outcome, reason: str, refund: Document | None = None,
                      extra: Document | None = None) -> None:  # fmt: skip
        fields: Document = {"status": outcome.status, "transaction": outcome.transaction, "errors": outcome.errors,
                            "lease_owner": None, "lease_until": None, **(extra or {})}  # fmt: skip
        undecided = outcome.status == "paid" and (outcome.transaction or {}).get("status") in WAITING
        if (_count(order, "sales_made") >= 2 or undecided) and "reconcile_after" not in fields:
            # Sold more than once: the earlier sale may show later, as a second charge the sweep gives
            # back. Still authorizing: it may yet be declined, which no webhook tells; the sweep looks.
            fields["reconcile_after"] = now() + timedelta(seconds=self.settle_delay)
        if refund is not None:
            fields["refund"] = refund
        # The nonce is single-use and no longer needed.
        pipeline = [*change(fields, now(), reason), {"$unset": ["nonce"]}]
        try:
            await self._mark(order, pipeline)
        except OperationFailure as error:
            if transient(error):
                raise
            # The stored order cannot take the outcome (grown near 16 MB by hand): its status at least,
            # which is what the customer and the queue need.
            log.error("order %s: only its status could be recorded (%s)", order["_id"], outcome.status)
            await self._mark(order, [{"$set": {"status": outcome.status, "lease_owner": None, "lease_until": None}}])
        log.info("order %s is %s: %s", order["_id"], outcome.status, reason)
        PAYMENTS.labels(outcome.status).inc()

    def _later(self, order: Document) -> datetime:
        """When to try an order again after a failure that says nothing about it: backoff by attempts."""
        return now() + _backoff(_count(order, "attempts"))

    async def _postpone(self, order: Document, at: datetime, **fields: Any) -> None:
        """Give the order back to the queue until `at`, its status unchanged, writing `fields` with it."""
        result = await self.db.orders.update_one(
            {"_id": order["_id"], "lease_owner": self.owner},
            {"$set": {**fields, "lease_owner": None, "lease_until": None, "next_attempt_at": at}},
        )
        if result.matched_count == 0:
            log.warning("order %s: another worker holds it now (this one's lease lapsed); left to it", order["_id"])

    async def _give_up(self, order: Document, why: str) -> None:
        """Take an order MongoDB refuses to update out of the queue, so it cannot block the others. One
        that may hold a charge (a sale was sent, or it is being given back) keeps its status: it is left
        as it is, for an operator (logged). Any other fails; if even that write is refused (a document at
        16 MB), its status alone is changed, the smallest write there is."""
        order_id = order["_id"]
        if order.get("sale_attempted") or order.get("status") == "cancelling":
            log.error("order %s (%s) is left out of the payment queue as it stands, since it may hold a charge: %s. "
                      "Shrink it in the shell (its history, items), then set its next_attempt_at to queue it again",
                      order_id, order.get("status"), why)  # fmt: skip
            # A date for a date, nulls for a lease: the document does not grow, so MongoDB takes it.
            await self.db.orders.update_one(
                {"_id": order_id}, {"$set": {"next_attempt_at": PARKED, "lease_owner": None, "lease_until": None}}
            )
            return
        log.error("order %s failed: %s", order_id, why)
        fields = {"status": "failed", "errors": [{"code": "unprocessable", "message": why}],
                  "lease_owner": None, "lease_until": None}  # fmt: skip
        try:
            await self.db.orders.update_one({"_id": order_id}, change(fields, now(), why))
        except OperationFailure:
            await self.db.orders.update_one({"_id": order_id}, {"$set": {"status": "failed"}})
        PAYMENTS.labels("failed").inc()

    # --- the sweep -----------------------------------------------------------------------------

    async def sweep_forever(self) -> None:
        """Every `PAYMENT_SWEEP` seconds (or when a webhook asks), reconcile failed orders."""
        while not self.stopping:
            try:
                await self.sweep()
            except DatabaseError as error:
                log.warning("the payment sweep could not read orders: %s", type(error).__name__)
            self.sweep_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sweep_wake.wait(), self.sweep_every)

    async def sweep(self) -> int:
        """Look up at the gateway the failed orders queued for it (`reconcile_after`) that are due;
        returns how many were corrected. Each order is claimed for its look by moving its next look further away."""
        corrected = 0
        for _ in range(SWEEP_BATCH):
            if self.stopping:
                break
            order = await self._next_to_reconcile()
            if order is None:
                break
            try:
                corrected += await self.reconcile(order)
            except GatewayUnavailable as error:
                log.warning("the payment sweep stops for now: %s", error)
                break
        return corrected

    async def _next_to_reconcile(self) -> Document | None:
        """The longest-waiting order due a look, claimed by moving its next look further away. Found first,
        then claimed by id: one MongoDB refuses to update (grown to 16 MB) leaves the queue instead of
        stopping the sweep for every other order."""
        stamp = now()
        due: Document = {
            "status": {"$in": list(SWEPT)},
            "sale_attempted": True,
            "created_at": {"$gte": stamp - timedelta(days=self.sweep_days)},
            # Only orders put in the queue: failures that may hide a charge (unconfirmed, or named by a
            # webhook) and orders sold more than once or still authorizing, not the refusals any client
            # can cause at will; the longest waiting first.
            "reconcile_after": {"$lte": stamp},
        }
        looks = counted("reconcile_looks")  # this look's number: the first waits PAYMENT_SWEEP x 2
        wait = {"$min": [MAX_SWEEP_INTERVAL.total_seconds() * 1000,
                         {"$multiply": [self.sweep_every * 1000, {"$pow": [2, {"$min": [looks, 16]}]}]}]}  # fmt: skip
        for _ in range(SWEEP_BATCH):
            candidate = await self.db.orders.find_one(due, {"_id": 1}, sort=[("reconcile_after", ASCENDING)])
            if candidate is None:
                return None
            try:
                found: Document | None = await self.db.orders.find_one_and_update(
                    {**due, "_id": candidate["_id"]},
                    [{"$set": {"reconcile_after": {"$add": [stamp, wait]}, "reconcile_looks": looks}}],
                    return_document=ReturnDocument.AFTER,
                )
            except OperationFailure as error:
                if transient(error):
                    raise
                log.error("order %s leaves the payment sweep: MongoDB refuses to update it (code %s); shrink "
                          "it in the shell and set its reconcile_after to queue it again",
                          candidate["_id"], error.code)  # fmt: skip
                await self.db.orders.update_one({"_id": candidate["_id"]}, {"$unset": {"reconcile_after": ""}})
                continue
            if found is not None:
                return found
        return None

    async def reconcile(self, order: Document) -> int:
        """Set the truth for one order: a charge the gateway has for a failed or declined order makes it
        `paid` (or `refunded`); a paid order whose sale was declined (or given back) since says so; a
        second charge for any order is given back. Returns the corrections made."""
        records = await self.gateway.records(str(order["_id"]))
        sale, records = await self._kept_sale(order, records)
        corrected = 0
        if sale is not None and order.get("status") in ("failed", "declined"):
            if truth(sale, records) in ("paid", "refunded"):
                corrected += await self._correct(order, sale, records)
        elif sale is not None and order.get("status") == "paid":
            corrected += await self._moved_on(order, sale, records)
        for extra in extra_charges(records, sale.id if sale is not None else None):
            corrected += await self._give_back_extra(order, extra)
        return corrected + await self._note_given_back(order, records)

    async def _kept_sale(self, order: Document, records: list[Record]) -> tuple[Record | None, list[Record]]:
        """The sale the order keeps: its transaction if that is one of its own (read by id when the search
        does not show it yet), else the first charge the gateway has for it. With the records, completed."""
        recorded = _transaction_id(order)
        for record in records:
            if record.id == recorded and record.kind == "sale":
                return record, records
        found = await self._recorded_sale(order) if recorded else None
        if found is not None:
            return found, [*records, found]
        return chosen_sale(records), records

    async def _moved_on(self, order: Document, sale: Record, records: list[Record]) -> int:
        """A paid order whose sale the gateway now shows declined, failed, voided or refunded takes that status."""
        status = truth(sale, records)
        if status == "paid":
            return 0
        fields: Document = {"status": status, "transaction": {"id": sale.id, "status": sale.status}}
        if status == "refunded":
            fields["refund"] = {"id": standing_refunds(sale, records)[0], "status": "unknown"}
        reason = f"reconciled: the gateway says transaction {sale.id} is {sale.status}"
        result = await self.db.orders.update_one({"_id": order["_id"], "status": "paid"}, change(fields, now(), reason))
        if result.modified_count == 0:
            return 0
        log.warning("order %s corrected from paid to %s: %s", order["_id"], status, reason)
        PAYMENT_CORRECTIONS.labels("paid", status).inc()
        return 1

    async def _correct(self, order: Document, sale: Record, records: list[Record]) -> int:
        """Make a failed or declined order what the gateway's charge for it says."""
        if truth(sale, records) == "refunded":
            outcome = Outcome("refunded", {"id": sale.id, "status": sale.status})
        else:
            outcome = await self.confirm(order, sale)
        if outcome.status == "failed":
            return 0
        was = order["status"]
        reason = f"reconciled: the gateway has transaction {sale.id} ({sale.status}) for this order"
        fields = {"status": outcome.status, "transaction": outcome.transaction, "errors": outcome.errors}
        result = await self.db.orders.update_one(
            {"_id": order["_id"], "status": was}, [*change(fields, now(), reason), {"$unset": ["nonce"]}]
        )
        if result.modified_count == 0:
            return 0
        log.warning("order %s corrected from %s to %s: %s", order["_id"], was, outcome.status, reason)
        PAYMENT_CORRECTIONS.labels(was, outcome.status).inc()
        return 1

    async def _give_back_extra(self, order: Document, extra: Record) -> int:
        """Void or refund a second charge for an order, once: the order records that the call started,
        so another instance's sweep leaves it alone until the gateway's record of it is conclusive, and
        the sale is read again (by id, consistently) right before the call."""
        if extra.status not in VOIDABLE | REFUNDABLE:  # authorizing, settlement_pending: on a later look
            return 0
        stamp = now()
        entries = {"$cond": [{"$isArray": "$extra_charges"}, "$extra_charges", []]}
        others = {"$filter": {"input": entries, "cond": {"$ne": ["$$this.id", {"$literal": extra.id}]}}}
        started = {"$literal": {"id": extra.id, "at": stamp}}
        claimed = await self.db.orders.update_one(
            {"_id": order["_id"],
             "extra_charges": {"$not": {"$elemMatch": {"id": extra.id, "at": {"$gt": stamp - self.window}}}}},
            [{"$set": {"extra_charges": {"$slice": [{"$concatArrays": [others, [started]]}, -EXTRA_CHARGES_KEPT]}}}],
        )  # fmt: skip
        if claimed.matched_count == 0:
            return 0  # being given back by another look, or was a moment ago: the next look sees the result
        fresh = await self.gateway.find(extra.id)
        if fresh is None or fresh.order_id != str(order["_id"]) or truth(fresh, []) != "paid":
            return 0  # given back meanwhile (noted by the next look), or not ours to touch
        voiding = fresh.status in VOIDABLE
        result = await (self.gateway.void if voiding else self.gateway.refund)(extra.id)
        if isinstance(result, Refusal):
            log.warning("order %s: giving back the second charge %s was refused: %s", order["_id"], extra.id,
                        result.errors)  # fmt: skip
            return 0
        return await self._noted(order, extra, "voided" if voiding else "refunded")

    async def _note_given_back(self, order: Document, records: list[Record]) -> int:
        """Record the second charges noted on the order (`extra_charges`) that the gateway now shows given
        back, though their call's answer was lost."""
        entries = order.get("extra_charges")
        pending = {entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)
                   and not entry.get("done")} if isinstance(entries, list) else set()  # fmt: skip
        noted = 0
        for record in records:
            if record.id in pending and record.kind == "sale" and truth(record, records) in ("voided", "refunded"):
                noted += await self._noted(order, record, truth(record, records))
        return noted

    async def _noted(self, order: Document, extra: Record, how: str) -> int:
        """Mark a second charge given back on the order, in `history` too, once."""
        reason = f"the gateway had a second charge for this order, transaction {extra.id} ({extra.amount}): {how}"
        entries = {"$cond": [{"$isArray": "$extra_charges"}, "$extra_charges", []]}
        mine = {"$eq": ["$$this.id", {"$literal": extra.id}]}
        done = {"$map": {"input": entries,
                         "in": {"$cond": [mine, {"$mergeObjects": ["$$this", {"done": True}]}, "$$this"]}}}  # fmt: skip
        result = await self.db.orders.update_one(
            {"_id": order["_id"], "extra_charges": {"$elemMatch": {"id": extra.id, "done": {"$ne": True}}}},
            [{"$set": {"history": appended("$status", now(), reason), "extra_charges": done}}],
        )
        if result.modified_count == 0:
            return 0
        log.error("order %s: %s", order["_id"], reason)
        PAYMENT_EXTRA_CHARGES.labels(how).inc()
        return 1
