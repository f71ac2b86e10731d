"""Client payloads in, for HTTP bodies and websocket frames alike: one JSON object, no key MongoDB
could read as an operator, and a model validated strictly, or the `ServiceError` that says why not."""

from __future__ import annotations

from typing import Any, TypeVar

import ujson
from pydantic import BaseModel, ValidationError

from models.common import ID_PATTERN, NONBLANK
from models.users import EMAIL_PATTERN

from .errors import BadRequest, ValidationFailed

M = TypeVar("M", bound=BaseModel)


MAX_DEPTH = 32  # objects and arrays within each other; no shape of the API needs more than 4


def decode_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """One JSON object from `raw`, nested at most `MAX_DEPTH` deep, or a 400 saying what is wrong."""
    try:
        value = ujson.loads(raw)
    except (ValueError, OverflowError, RecursionError):
        raise BadRequest(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    problem = _problem(value)
    if problem is not None:
        raise BadRequest(f"{what} {problem}")
    return value


def _problem(value: Any) -> str | None:
    """What makes a decoded payload unusable, found in one walk (iterative, so no input can exhaust
    the stack): objects and arrays nested too deep, or a string that cannot be written back as UTF-8
    (JSON allows a lone surrogate escape, which nothing downstream can encode)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return "has a string that is not valid Unicode (a lone surrogate, \\ud800...)"
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def check_keys(value: Any, path: str = "") -> None:
    """Refuse any key that MongoDB would read as an operator or a path: `$...`, dotted, or with NUL."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key.startswith("$") or "." in key or "\x00" in key:
                raise ValidationFailed(
                    "field names may not start with '$' or contain '.'",
                    details=[{"field": where, "message": "not an allowed field name"}],
                )
            check_keys(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_keys(item, f"{path}[{index}]")


def parse(model: type[M], payload: Any) -> M:
    """Validate a decoded JSON payload into `model`, or raise a 422 listing every bad field."""
    check_keys(payload)
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": _message(item)}
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed("the request body is invalid", details=details) from None


# What a pattern means, said in words instead of as the regex.
PATTERNS = {
    EMAIL_PATTERN: "not a valid email address",
    NONBLANK: "cannot be blank",
    ID_PATTERN: "not a 24-character hex id",
}


def _message(item: Any) -> str:
    if item["type"] == "string_pattern_mismatch":
        return PATTERNS.get(item.get("ctx", {}).get("pattern"), str(item["msg"]))
    return str(item["msg"])
