"""Contacts: each user's own address book."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from .common import Input, Output, ident, moment, optional_text, text, texts

Tag = Annotated[str, Field(min_length=1, max_length=50)]
Tags = Annotated[list[Tag], Field(max_length=50)]


class ContactIn(Input):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, max_length=10_000)
    tags: Tags = Field(default_factory=list)


class ContactPatch(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, max_length=10_000)
    tags: Tags | None = None

    @field_validator("name")
    @classmethod
    def _name_is_required(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("name cannot be cleared")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the client sent; a null `tags` empties the list."""
        sent = self.model_dump(exclude_unset=True)
        if "tags" in sent and sent["tags"] is None:
            sent["tags"] = []
        return sent


class ContactOut(Output):
    id: str
    name: str
    email: str | None
    phone: str | None
    company: str | None
    notes: str | None
    tags: list[str]
    created_at: str
    updated_at: str


class ContactPage(Output):
    items: list[ContactOut]
    next: str | None


def contact_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident(doc["_id"]),
        "name": text(doc, "name", most=200),
        "email": optional_text(doc, "email", 254),
        "phone": optional_text(doc, "phone", 50),
        "company": optional_text(doc, "company", 200),
        "notes": optional_text(doc, "notes", 10_000),
        "tags": texts(doc, "tags"),
        "created_at": moment(doc, "created_at"),
        "updated_at": moment(doc, "updated_at"),
    }
