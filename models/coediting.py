"""Live co-editing's frames' data: Yjs bytes as base64 in JSON (docs/protocol.md, the `doc` stream)."""

from __future__ import annotations

import base64
import binascii
from typing import Any


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, limit: int) -> bytes | None:
    """The bytes of a base64 string of at most `limit` decoded bytes; None if it is not one."""
    if len(text) > (limit + 2) // 3 * 4:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def update_out(record: dict[str, Any]) -> dict[str, Any]:
    """A stored update as its event shows it (KeyError / TypeError for a record the service did not write)."""
    update, seq, author = record["update"], record["seq"], record.get("author")
    if not isinstance(update, bytes) or not isinstance(seq, int):
        raise TypeError("an update entry without binary update or whole seq")
    return {"update": b64(update), "seq": seq, "author": None if author is None else str(author)}


def sync_out(update: bytes, vector: bytes, seq: int, role: str) -> dict[str, Any]:
    return {"update": b64(update), "vector": b64(vector), "seq": seq, "role": role}
