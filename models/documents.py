"""Documents: shared, versioned, with collaborators, revisions and presence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator

from .common import Input, Output, iso
from .contacts import Tags
from .users import Email, UserRef

Role = Literal["editor", "viewer"]


class DocumentIn(Input):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(default="", max_length=1_000_000)
    abstract: str = Field(default="", max_length=5000)
    tags: Tags = Field(default_factory=list)


class DocumentPatch(Input):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    body: str | None = Field(default=None, max_length=1_000_000)
    abstract: str | None = Field(default=None, max_length=5000)
    tags: Tags | None = None

    @field_validator("title", "body", "abstract", "tags")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be changed but not set to null")
        return value


class CollaboratorIn(Input):
    email: Email
    role: Role


class Collaborator(UserRef):
    role: str


class DocumentOut(Output):
    id: str
    title: str
    slug: str
    body: str
    abstract: str
    tags: list[str]
    version: int
    owner: UserRef
    collaborators: list[Collaborator]
    created_at: str
    updated_at: str
    updated_by: UserRef  # an addition: who saved the current version


class DocumentPage(Output):
    items: list[DocumentOut]
    next: str | None


class RevisionOut(Output):
    version: int
    title: str
    body: str
    edited_by: UserRef
    edited_at: str


class RevisionPage(Output):
    items: list[RevisionOut]
    next: str | None


class PresenceOut(Output):
    viewing: list[UserRef]
    editing: list[UserRef]


def ref_out(ref: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(ref["_id"]), "name": ref["name"]}


def document_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(doc["_id"]),
        "title": doc["title"],
        "slug": doc["slug"],
        "body": doc.get("body", ""),
        "abstract": doc.get("abstract", ""),
        "tags": doc.get("tags", []),
        "version": doc["version"],
        "owner": ref_out(doc["owner"]),
        "collaborators": [
            {"id": str(c["_id"]), "name": c["name"], "role": c["role"]} for c in doc.get("collaborators", [])
        ],
        "created_at": iso(doc["created_at"]),
        "updated_at": iso(doc["updated_at"]),
        "updated_by": ref_out(doc.get("updated_by", doc["owner"])),
    }


def revision_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": doc["version"],
        "title": doc["title"],
        "body": doc.get("body", ""),
        "abstract": doc.get("abstract", ""),
        "tags": doc.get("tags", []),
        "edited_by": ref_out(doc["edited_by"]),
        "edited_at": iso(doc["edited_at"]),
    }


UserRefOut = dict[str, Any]


def presence_entry(record: dict[str, Any]) -> tuple[UserRefOut, str]:
    """A stored presence record as (the user as shown, their state)."""
    return {"id": str(record["user"]), "name": record["name"]}, str(record["state"])


def presence_summary(entries: Iterable[tuple[UserRefOut, str]]) -> tuple[list[UserRefOut], list[UserRefOut]]:
    """(viewing, editing) users by name; someone both viewing and editing (two tabs) counts as editing."""
    states: dict[str, tuple[UserRefOut, str]] = {}
    for user, state in entries:
        known = states.get(user["id"])
        if known is None or state == "editing":
            states[user["id"]] = (user, state)
    ordered = sorted(states.values(), key=lambda item: (item[0]["name"], item[0]["id"]))
    viewing = [user for user, state in ordered if state == "viewing"]
    editing = [user for user, state in ordered if state == "editing"]
    return viewing, editing


def presence_out(document_id: str, viewing: list[UserRefOut], editing: list[UserRefOut]) -> dict[str, Any]:
    return {"document": document_id, "viewing": viewing, "editing": editing}
