"""Orders: priced on the server from the catalog, created once per idempotency key."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal

from models.orders import OrderIn, order_out

from ..accounts import User
from ..database import Database, Document, DuplicateKeyError, ReturnDocument, now, parse_id
from ..errors import BadRequest, Conflict, ValidationFailed
from ..pages import newest_first, one
from .catalog import CENT, Catalog
from .gateway import Webhook
from .states import GATEWAY_STATUS, Record, change

MAX_KEY = 200


def fingerprint(data: OrderIn) -> str:
    """What makes two requests "the same body" for an idempotency key."""
    canonical = json.dumps(data.model_dump(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def price(catalog: Catalog, data: OrderIn) -> tuple[list[Document], Decimal]:
    unknown = [line.sku for line in data.items if line.sku not in catalog.items]
    if unknown:
        raise ValidationFailed(
            "unknown sku",
            details=[{"field": "items.sku", "message": f"{sku} is not in the catalog"} for sku in unknown],
        )
    lines, total = [], Decimal("0")
    for line in data.items:
        item = catalog.items[line.sku]
        amount = (item.price * line.quantity).quantize(CENT)
        total += amount
        lines.append({"sku": item.sku, "name": item.name, "quantity": line.quantity, "price": str(item.price),
                      "total": str(amount)})  # fmt: skip
    return lines, total.quantize(CENT)


async def create(db: Database, catalog: Catalog, user: User, key: str | None, data: OrderIn) -> tuple[Document, bool]:
    """(order, created): a repeated key with the same body returns the first order; another body is 409."""
    if not key or not key.strip():
        raise BadRequest("the Idempotency-Key header is required")
    if len(key) > MAX_KEY:
        raise BadRequest(f"Idempotency-Key is longer than {MAX_KEY} characters")
    if not key.isascii() or not key.isprintable():
        raise BadRequest("Idempotency-Key must be printable ASCII")
    lines, amount = price(catalog, data)
    stamp = now()
    doc: Document = {
        "owner": user.id,
        "idempotency_key": key,
        "fingerprint": fingerprint(data),
        "status": "pending",
        "amount": str(amount),
        "currency": catalog.currency,
        "items": lines,
        "nonce": data.payment_method_nonce,
        "transaction": None,
        "errors": [],
        "attempts": 0,
        "sale_attempted": False,
        "lease_owner": None,
        "lease_until": None,
        "next_attempt_at": stamp,
        "history": [{"status": "pending", "at": stamp, "reason": "placed"}],
        "created_at": stamp,
        "updated_at": stamp,
    }
    try:
        doc["_id"] = (await db.orders.insert_one(doc)).inserted_id
        return doc, True
    except DuplicateKeyError:
        first = await db.orders.find_one({"owner": user.id, "idempotency_key": key})
        if first is None:  # pragma: no cover - the unique index only fails for an existing order
            raise
        if first.get("fingerprint") != doc["fingerprint"]:
            raise Conflict("this Idempotency-Key was used with a different body") from None
        return first, False


async def mine(db: Database, user: User, order_id: str) -> Document:
    return await one(db.orders, order_id, {"owner": user.id}, "order")


async def listing(db: Database, user: User, limit: int, after: str | None) -> tuple[list[Document], str | None]:
    return await newest_first(db.orders, {"owner": user.id}, limit, after)


async def cancel(db: Database, user: User, order_id: str) -> Document:
    """Ask for a paid order's money back (the worker voids or refunds it); a repeat, or an order
    already given back, is answered as it stands. Never charged: 409."""
    for _ in range(3):  # the status may move between the read and the write: read again
        # Read as the API shows it first: an order stored in a shape that cannot be read is a 409
        # before anything is queued, not after.
        doc = await one(db.orders, order_id, {"owner": user.id}, "order", check=order_out)
        status = doc.get("status")
        if status in ("cancelling", "voided", "refunded"):
            return doc
        if status in ("pending", "processing"):
            raise Conflict("this order is still being charged: cancel it once it is paid")
        if status != "paid":
            raise Conflict(f"this order was never charged ({status}): there is nothing to give back")
        stamp = now()
        fields = {"status": "cancelling", "next_attempt_at": stamp, "cancel_started_at": None, "give_back_attempts": 0}
        cancelled: Document | None = await db.orders.find_one_and_update(
            {"_id": doc["_id"], "owner": user.id, "status": "paid"},
            change(fields, stamp, "cancelled by its owner"),
            return_document=ReturnDocument.AFTER,
        )
        if cancelled is not None:
            return cancelled
    raise Conflict("this order is changing: try again")


# A dispute is not a transaction status: it is recorded as the webhook tells it, and moves no money.
DISPUTE_STATUS = {
    "dispute_opened": "disputed",
    "dispute_lost": "dispute_lost",
    "dispute_won": "dispute_won",
    "dispute_accepted": "dispute_accepted",
}


async def record_webhook(db: Database, event: Webhook, found: Record | None) -> bool:
    """Record what a verified webhook's transaction is now; whether it matched an order. What it is now
    is the gateway's record (`found`, read back by id by the caller), never the webhook's payload: a
    late or repeated delivery cannot move an order. A webhook naming an order that failed or is unsure
    of its sale makes it looked up at the gateway at once (the caller nudges the sweep)."""
    status = DISPUTE_STATUS.get(event.kind) or (found.status if found is not None else None)
    matched = False
    if event.transaction_id is not None and status:
        stamp = now()
        result = await db.orders.update_one(
            {"transaction.id": event.transaction_id}, {"$set": {"transaction.status": status, "updated_at": stamp}}
        )
        matched = result.matched_count > 0
        now_means = GATEWAY_STATUS.get(status)  # disputes are not transaction statuses: the money stays
        if now_means in ("declined", "failed"):
            await db.orders.update_one(
                {"transaction.id": event.transaction_id, "status": "paid"},
                change({"status": now_means}, stamp, f"the gateway says the sale is {status} ({event.kind})"),
            )
        matched = await _refund_moved(db, event.transaction_id, status, stamp) or matched
    if event.order_id is not None:
        try:
            order_id = parse_id(event.order_id)
        except BadRequest:  # another system's order id, on the same merchant account
            return matched
        stamp = now()
        uncertain = {"_id": order_id, "sale_attempted": True}
        for status, due in (("failed", "reconcile_after"), ("processing", "next_attempt_at")):
            nudged = await db.orders.update_one({**uncertain, "status": status}, {"$set": {due: stamp}})
            matched = matched or nudged.matched_count > 0
    return matched


async def _refund_moved(db: Database, refund_id: str, status: str, stamp: datetime) -> bool:
    """Record a refund's new status; one that failed at the gateway gave nothing back, so its order is
    `paid` again (with the reason, pushed live) and can be cancelled again."""
    result = await db.orders.update_one(
        {"refund.id": refund_id}, {"$set": {"refund.status": status, "updated_at": stamp}}
    )
    if GATEWAY_STATUS.get(status) in ("declined", "failed", "voided"):
        message = f"the refund {refund_id} is {status} at the gateway: nothing was given back; cancel the order again"
        fields = {"status": "paid", "errors": [{"code": "refund_failed", "message": message}]}
        await db.orders.update_one({"refund.id": refund_id, "status": "refunded"}, change(fields, stamp, message))
    return result.matched_count > 0
