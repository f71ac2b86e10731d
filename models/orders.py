"""Orders: what a client may send (never a price) and what it gets back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, Protocol

from pydantic import BeforeValidator, Field

from .common import Input, Output, Trim, Unreadable, ident, listed, moment, required_text, text, whole

MAX_QUANTITY = 100


def _whole(value: Any) -> Any:
    """JSON does not tell 2 from 2.0 (JavaScript cannot): a number with no fraction is a whole number."""
    return int(value) if type(value) is float and value.is_integer() else value


# A line's quantity: 1..MAX_QUANTITY, as 2 or 2.0 (JSON Schema's `integer` is both).
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(_whole)]


class LineIn(Input):
    sku: str = Field(min_length=1, max_length=64)  # as sent, not trimmed: the OpenAPI document lists the skus
    quantity: Quantity


class OrderIn(Input):
    # A sku may be on several lines: the amount adds them up.
    items: Annotated[list[LineIn], Field(min_length=1, max_length=50)]
    payment_method_nonce: Annotated[str, required_text(4096), Trim]


class CatalogItem(Output):
    sku: str
    name: str
    price: str
    currency: str


class CatalogOut(Output):
    items: list[CatalogItem]


class ClientTokenOut(Output):
    client_token: str
    environment: str  # an addition: sandbox, production, or local (the emulator: use test nonces)
    drop_in: bool  # an addition: whether a page should show Braintree's Drop-in (else test nonces)


class WebhookOut(Output):
    kind: str  # Braintree's notification kind
    matched: bool  # whether it named one of our orders


class Line(Output):
    sku: str
    name: str
    quantity: int
    price: str
    total: str


class Transaction(Output):
    id: str
    status: str


class OrderError(Output):
    code: str
    message: str


class Change(Output):
    status: str
    at: str
    reason: str


class OrderOut(Output):
    id: str
    status: str
    amount: str
    currency: str
    items: list[Line]
    transaction: Transaction | None
    errors: list[OrderError]
    refund: Transaction | None  # an addition: the credit that refunded the order
    history: list[Change]  # an addition: every status change, with its reason, oldest first
    created_at: str
    updated_at: str


class OrderPage(Output):
    items: list[OrderOut]
    next: str | None


def line_out(line: Any) -> dict[str, Any]:
    if type(line) is not dict:
        raise Unreadable("an order line is not an object")
    return {"sku": text(line, "sku"), "name": text(line, "name"), "quantity": whole(line, "quantity"),
            "price": text(line, "price"), "total": text(line, "total")}  # fmt: skip


def pair(entry: Any, first: str, second: str) -> dict[str, str]:
    """A transaction (`id`, `status`) or an error (`code`, `message`): two strings."""
    if type(entry) is not dict:
        raise Unreadable(f"not an object with {first} and {second}")
    return {first: text(entry, first), second: text(entry, second)}


def history_out(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The status changes; an entry the shell (or another version) left unreadable is left out
    rather than hiding the whole order."""
    entries = doc.get("history")
    shown = []
    for entry in entries if isinstance(entries, list) else []:
        with contextlib.suppress(Unreadable, TypeError, AttributeError, KeyError):
            shown.append({"status": text(entry, "status"), "at": moment(entry, "at"), "reason": text(entry, "reason")})
    return shown


def order_out(doc: dict[str, Any]) -> dict[str, Any]:
    transaction = doc.get("transaction")
    refund = doc.get("refund")
    return {
        "id": ident(doc["_id"]),
        "status": text(doc, "status"),
        "amount": text(doc, "amount"),
        "currency": text(doc, "currency"),
        "items": [line_out(line) for line in listed(doc, "items")],
        "transaction": None if transaction is None else pair(transaction, "id", "status"),
        "errors": [pair(error, "code", "message") for error in listed(doc, "errors")],
        "refund": None if refund is None else pair(refund, "id", "status"),
        "history": history_out(doc),
        "created_at": moment(doc, "created_at"),
        "updated_at": moment(doc, "updated_at"),
    }


class Priced(Protocol):
    """A catalog item, as the catalog keeps it."""

    @property
    def sku(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def price(self) -> Decimal: ...


def catalog_out(currency: str, items: Iterable[Priced]) -> dict[str, Any]:
    return {
        "items": [
            {"sku": item.sku, "name": item.name, "price": str(item.price), "currency": currency} for item in items
        ]
    }
