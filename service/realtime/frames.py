"""The JSON frames the server sends, encoded once: compact, UTF-8 as is, `/` unescaped."""

from __future__ import annotations

from typing import Any

import ujson

from ..errors import ServiceError

PONG = '{"type":"pong"}'


def encode(frame: Any) -> str:
    try:
        return ujson.dumps(frame, ensure_ascii=False, escape_forward_slashes=False)
    except UnicodeEncodeError:  # a lone surrogate (from stored data): escaped, still valid JSON
        return ujson.dumps(frame, ensure_ascii=True, escape_forward_slashes=False)


def error_frame(error: ServiceError, sub_id: str | None = None, **extra: Any) -> str:
    """The websocket form of a ServiceError (the same code and message as an HTTP answer)."""
    frame: dict[str, Any] = {"type": "error"}
    if sub_id is not None:
        frame["id"] = sub_id
    frame["code"] = error.code
    frame["message"] = error.message
    return encode({**frame, **extra})


def subscribed(sub_id: str, cursor: str) -> str:
    """`subscribed`, with the cursor everything before which the subscription has been given: a
    client that sees no event before it drops still resumes from there (an addition)."""
    frame = {"type": "subscribed", "id": sub_id}
    if cursor:
        frame["cursor"] = cursor
    return encode(frame)
