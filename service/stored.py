"""Reading what MongoDB holds without trusting it.

Operators write with the shell, older versions wrote other shapes, and the validator can be bypassed:
a stored document that cannot be shown is left out of a list (the page still answers), and a single
one answers 409 `conflict` naming it, never 500. Each is logged once (collection and id, at warning
level) and counted in `murmuration_malformed_documents_total{collection}`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from models.common import Unreadable

from .errors import Conflict
from .metrics import MALFORMED

log = logging.getLogger("murmuration.stored")

T = TypeVar("T")
Shape = Callable[[dict[str, Any]], T]

# What a shape function raises on a document it cannot read.
UNREADABLE = (Unreadable, KeyError, TypeError, ValueError, AttributeError)
_SEEN_LIMIT = 10_000
_seen: OrderedDict[tuple[str, str], None] = OrderedDict()


def maybe(collection: str, doc: dict[str, Any], shape: Shape[T]) -> T | None:
    """One document shaped for the API, or None if it cannot be (reported once)."""
    try:
        return shape(doc)
    except UNREADABLE as error:
        malformed(collection, doc, error)
        return None


def shown(collection: str, docs: Iterable[dict[str, Any]], shape: Shape[T]) -> list[T]:
    """Each document shaped for the API; one that cannot be is left out (and reported once)."""
    return [out for doc in docs if (out := maybe(collection, doc, shape)) is not None]


def one(collection: str, doc: dict[str, Any], shape: Shape[T]) -> T:
    """One document shaped for the API, or a 409 that says it is stored in a shape that cannot be read."""
    try:
        return shape(doc)
    except UNREADABLE as error:
        malformed(collection, doc, error)
        raise unreadable(collection, doc) from None


def unreadable(collection: str, doc: dict[str, Any]) -> Conflict:
    what = collection.removesuffix("s")
    return Conflict(
        f"this {what} is stored in a shape the service cannot read; an operator can repair it "
        f"(db.{collection} _id {str(doc.get('_id'))[:40]}; see docs/operations.md)",
        details=[{"field": "_id", "message": "malformed stored document"}],
    )


def malformed(collection: str, doc: dict[str, Any], error: BaseException) -> None:
    key = (collection, repr(doc.get("_id") if isinstance(doc, dict) else doc)[:80])
    if key in _seen:
        return
    _seen[key] = None
    if len(_seen) > _SEEN_LIMIT:
        _seen.popitem(last=False)
    MALFORMED.labels(collection).inc()
    log.warning(
        "%s %s cannot be shown (%s: %s): left out until repaired; see docs/operations.md",
        collection, key[1], type(error).__name__, str(error)[:200],
    )  # fmt: skip
