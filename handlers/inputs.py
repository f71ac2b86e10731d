"""Reading requests: JSON bodies into models, list parameters, path ids."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from sanic import Request

from service.errors import BadRequest, ValidationFailed
from service.pages import DEFAULT_LIMIT, MAX_LIMIT
from service.payloads import decode_object, parse

M = TypeVar("M", bound=BaseModel)

PAGING = {"limit": f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}", "after": "the `next` cursor of the previous page"}


def body(request: Request, model: type[M]) -> M:
    """The JSON object in the request body, validated into `model` (400 if not JSON, 422 if invalid)."""
    if not request.body:
        raise BadRequest("a JSON object body is required")
    return parse(model, decode_object(request.body, "the request body"))


def page_args(request: Request) -> tuple[int, str | None]:
    """`?limit=` (1..100, default 20; anything else is a 422) and `?after=` (checked where it is
    used: a bad cursor is a 400), never a query."""
    raw = request.args.get("limit")
    limit = DEFAULT_LIMIT if raw is None else whole(raw)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        message = f"limit must be a whole number from 1 to {MAX_LIMIT}"
        raise ValidationFailed(message, details=[{"field": "limit", "message": message}])
    after = request.args.get("after") or None
    return limit, after


def whole(raw: str, digits: int = 6) -> int | None:
    """A whole number of at most `digits` ASCII digits, or None (not "²", not 5,000 digits)."""
    text = raw.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


def text_arg(request: Request, name: str, max_length: int = 200) -> str | None:
    value: str | None = request.args.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > max_length:
        raise BadRequest(f"{name} is longer than {max_length} characters")
    if any(ord(c) < 32 or c in "\x7f\ufffd" for c in value):
        message = "control characters (NUL, ...) and undecodable bytes are not allowed"
        raise ValidationFailed(f"{name}: {message}", details=[{"field": name, "message": message}])
    return value.strip()
