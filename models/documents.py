"""Documents: shared, versioned, with collaborators, revisions and presence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .common import Input, Output, Trim, Unreadable, ident, listed, moment, ref, required_text, text, texts, whole
from .contacts import Tags
from .users import Email, UserRef

Role = Literal["editor", "viewer"]

# Longest values, in characters: what a request may send, what a stored document may hold to be shown,
# and what the collection's validator accepts (service/schemas.py) are the same numbers.
TITLE, SLUG, BODY, ABSTRACT = 300, 80, 1_000_000, 5000


Title = Annotated[str, required_text(TITLE), Trim]
Body = Annotated[str, Field(max_length=BODY), Trim]
Abstract = Annotated[str, Field(max_length=ABSTRACT), Trim]


class DocumentIn(Input):
    title: Title
    body: Body = ""
    abstract: Abstract = ""
    tags: Tags = Field(default_factory=list)


class DocumentPatch(Input):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})  # at least one field to change

    # Each may be left out, none set to null.
    title: Title | SkipJsonSchema[None] = None
    body: Body | SkipJsonSchema[None] = None
    abstract: Abstract | SkipJsonSchema[None] = None
    tags: Tags | SkipJsonSchema[None] = None

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


def collaborator_out(entry: Any) -> dict[str, Any]:
    role = text(entry, "role") if type(entry) is dict else None
    if role not in ("editor", "viewer"):
        raise Unreadable("a collaborator's role is not editor or viewer")
    return {**ref(entry), "role": role}


def document_out(doc: dict[str, Any], roster: bool = True) -> dict[str, Any]:
    """`roster=False` leaves out the collaborators (for an event whose reader asked not to get them)."""
    owner = ref(doc["owner"])
    return {
        "id": ident(doc["_id"]),
        "title": text(doc, "title", most=TITLE),
        "slug": text(doc, "slug", most=SLUG),
        "body": text(doc, "body", ""),
        "abstract": text(doc, "abstract", "", most=ABSTRACT),
        "tags": texts(doc, "tags"),
        "version": whole(doc, "version"),
        "owner": owner,
        **({"collaborators": [collaborator_out(entry) for entry in listed(doc, "collaborators")]} if roster else {}),
        "created_at": moment(doc, "created_at"),
        "updated_at": moment(doc, "updated_at"),
        "updated_by": ref(doc["updated_by"]) if "updated_by" in doc else owner,
    }


def revision_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": whole(doc, "version"),
        "title": text(doc, "title", most=TITLE),
        "body": text(doc, "body", ""),
        "abstract": text(doc, "abstract", "", most=ABSTRACT),
        "tags": texts(doc, "tags"),
        "edited_by": ref(doc["edited_by"]),
        "edited_at": moment(doc, "edited_at"),
    }


UserRefOut = dict[str, Any]


def presence_entry(record: dict[str, Any]) -> tuple[UserRefOut, str]:
    """A stored presence record as (the user as shown, their state)."""
    state = record["state"]
    if state not in ("viewing", "editing"):
        raise Unreadable("state is not viewing or editing")
    return {"id": ident(record["user"]), "name": text(record, "name")}, state


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
