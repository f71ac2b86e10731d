"""Reading requests: JSON bodies into models, list parameters, path ids."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from sanic import Request

from service.errors import BadRequest, ValidationFailed
from service.pages import DEFAULT_LIMIT, MAX_LIMIT
from service.payloads import decode_object, parse

from .openapi import Param

M = TypeVar("M", bound=BaseModel)

AFTER_PATTERN = "^([0-9a-fA-F]{24})?$"
PAGING = {
    "limit": Param(f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    # Empty is the first page, for clients that send `after=` with no cursor yet.
    "after": Param("the `next` cursor of the previous page", {"type": "string", "pattern": AFTER_PATTERN}),
}
TEXT_ARG_LONGEST = 200
# A search text: no control characters, at most TEXT_ARG_LONGEST characters (text_arg's rules).
TEXT_ARG = {"type": "string", "maxLength": TEXT_ARG_LONGEST, "pattern": "^[^\\x00-\\x1f\\x7f\\ufffd]*$"}


def body(request: Request, model: type[M]) -> M:
    """The JSON object in the request body, validated into `model` (400 if not JSON, 422 if invalid)."""
    if not request.body:
        raise BadRequest("a JSON object body is required")
    return parse(model, decode_object(request.body, "the request body"))


def page_args(request: Request) -> tuple[int, str | None]:
    """`?limit=` (1..100, default 20; anything else, blank, padded or given twice, is a 422) and
    `?after=` (checked where it is used: a bad cursor is a 400), never a query."""
    sent = request.get_args(keep_blank_values=True).getlist("limit")  # blank and repeated ones too
    raw = sent[0] if len(sent) == 1 else None
    limit = DEFAULT_LIMIT if not sent else whole(raw) if raw is not None and raw == raw.strip() else None
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        message = f"limit must be a whole number from 1 to {MAX_LIMIT}"
        raise ValidationFailed(message, details=[{"field": "limit", "message": message}])
    after = request.args.get("after") or None
    return limit, after


def whole(raw: str, digits: int = 6) -> int | None:
    """A whole number of at most `digits` ASCII digits, or None (not "²", not 5,000 digits)."""
    text = raw.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


def text_arg(request: Request, name: str, max_length: int = TEXT_ARG_LONGEST) -> str | None:
    value: str | None = request.args.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > max_length:
        raise BadRequest(f"{name} is longer than {max_length} characters")
    if any(ord(c) < 32 or c in "\x7f\ufffd" for c in value):
        message = "control characters (NUL, ...) and undecodable bytes are not allowed"
        raise ValidationFailed(f"{name}: {message}", details=[{"field": name, "message": message}])
    return value.strip()
