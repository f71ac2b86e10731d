"""Invites: access promised to an address that is not a verified account yet."""

from __future__ import annotations

from typing import Any, Literal

from .common import Output, ident, moment, text


class InviteOut(Output):
    id: str
    email: str
    kind: Literal["document", "room"]
    target: str
    role: Literal["editor", "viewer"] | None = None
    pending: bool
    created_at: str


class InvitedOut(Output):
    invite: InviteOut


class InvitePage(Output):
    items: list[InviteOut]
    next: str | None


def invite_out(doc: dict[str, Any]) -> dict[str, Any]:
    kind = doc["kind"]
    if kind not in ("document", "room"):
        raise ValueError("kind is not document or room")
    out = {"id": ident(doc["_id"]), "email": text(doc, "email"), "kind": kind, "target": ident(doc["target"]),
           "pending": True, "created_at": moment(doc, "created_at")}  # fmt: skip
    if kind == "document":  # a room invite has no role (the contract's `"role"?`)
        out["role"] = doc.get("role") if doc.get("role") in ("editor", "viewer") else "viewer"
    return out
