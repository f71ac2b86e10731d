"""Shared pieces of every shape: strict inputs, outputs, times and pages. Imports nothing of the service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# What the OpenAPI document says of ids in paths, queries and bodies: an ObjectId's 24 hex digits.
ID_PATTERN = "^[0-9a-fA-F]{24}$"
# Whitespace as Python's str.strip sees it, spelled so that ECMAScript regexes (JSON Schema's) agree.
SPACE = r"\s\x1c-\x1f\x85\ufeff"
# "Not blank": has a character that is not whitespace. Enforced by the models and shown in the schema.
NONBLANK = f"[^{SPACE}]"


class Input(BaseModel):
    """A client payload: unknown fields and wrong JSON types are refused, never coerced. Every
    constraint is a JSON Schema keyword (lengths on the text as sent, patterns), so the OpenAPI
    document says exactly what is accepted; text fields are trimmed after they are checked."""

    model_config = ConfigDict(extra="forbid", strict=True)


# What trimming removes: Python's whitespace, and the byte-order mark ECMAScript counts as whitespace.
STRIPPED = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\ufeff"


def _trim(value: str) -> str:
    return value.strip(STRIPPED)


# Stores a text trimmed, once its constraints (on the text as sent) are checked.
Trim = AfterValidator(_trim)


def required_text(most: int) -> Any:
    """The constraints of a required text of 1..`most` characters, not all whitespace."""
    return Field(min_length=1, max_length=most, pattern=NONBLANK)


class Output(BaseModel):
    """A response shape; used to document the API (answers are built by plain functions, for speed)."""


class Unreadable(ValueError):
    """A stored document that does not have the shape the service writes (hand-made in the shell,
    written with the validator bypassed, or by another version): it cannot be shown."""


HEX = frozenset("0123456789abcdef")


def ident(value: Any) -> str:
    """An id as the API shows it: 24 hex digits (an ObjectId); anything else cannot be one of ours."""
    text = str(value)
    if len(text) != 24 or not HEX.issuperset(text):
        raise Unreadable(f"not an id: {text[:40]!r}")
    return text


LONGEST = 1_000_000  # no string the API accepts is longer (a document's body)


def text(doc: dict[str, Any], key: str, default: str | None = None, most: int = LONGEST) -> str:
    """A string field of at most `most` characters (what the API accepts); missing, it is `default`
    (if one is given)."""
    value = doc[key] if default is None else doc.get(key, default)
    if type(value) is not str or len(value) > most:
        raise Unreadable(f"{key} is not a string of at most {most} characters")
    return value


def optional_text(doc: dict[str, Any], key: str, most: int = LONGEST) -> str | None:
    value = doc.get(key)
    if value is not None and (type(value) is not str or len(value) > most):
        raise Unreadable(f"{key} is not a string of at most {most} characters")
    return value


def texts(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key, [])
    if type(value) is not list or not all(type(item) is str for item in value):
        raise Unreadable(f"{key} is not a list of strings")
    return value


def whole(doc: dict[str, Any], key: str) -> int:
    """A whole number, as the service writes it or as the shell does (a double like 3.0)."""
    value = doc[key]
    if type(value) is int or (type(value) is float and value.is_integer()):
        return int(value)
    raise Unreadable(f"{key} is not a whole number")


def moment(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, datetime):
        raise Unreadable(f"{key} is not a date")
    return iso(value)


def ref(value: Any) -> dict[str, str]:
    """A stored `{_id, name}` (an owner, an author, a member) as `{"id", "name"}`."""
    if type(value) is not dict:
        raise Unreadable("not an {_id, name} reference")
    return {"id": ident(value["_id"]), "name": text(value, "name")}


def listed(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if type(value) is not list:
        raise Unreadable(f"{key} is not a list")
    return value


def iso(value: datetime) -> str:
    """ISO 8601, UTC, milliseconds, `Z`: `2026-11-20T10:00:00.123Z`.

    `isoformat` is C code (strftime was a sixth of a contacts page's CPU); datetimes from MongoDB are
    UTC (the client is tz-aware) and ones without a zone are taken as UTC.
    """
    out = value.isoformat(timespec="milliseconds")
    return out[:-6] + "Z" if value.tzinfo is not None else out + "Z"


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next": next_cursor}


class Page(Output):
    items: list[Any]
    next: str | None = Field(description="cursor for `?after=`, or null on the last page")


class ErrorBody(Output):
    class Error(BaseModel):
        code: str
        message: str
        details: list[dict[str, Any]] | None = None

    error: Error
