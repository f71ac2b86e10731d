"""Contacts: each user's own address book."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .common import Input, Output, Trim, ident, moment, optional_text, required_text, text, texts

# Longest values, in characters: requests, stored contacts that can be shown, and the validator agree.
NAME, EMAIL, PHONE, COMPANY, NOTES = 200, 254, 50, 200, 10_000

Tag = Annotated[str, required_text(50), Trim]
Tags = Annotated[list[Tag], Field(max_length=50)]
Name = Annotated[str, required_text(NAME), Trim]
EmailText = Annotated[str, Field(max_length=EMAIL), Trim]
Phone = Annotated[str, Field(max_length=PHONE), Trim]
Company = Annotated[str, Field(max_length=COMPANY), Trim]
Notes = Annotated[str, Field(max_length=NOTES), Trim]


class ContactIn(Input):
    name: Name
    email: EmailText | None = None
    phone: Phone | None = None
    company: Company | None = None
    notes: Notes | None = None
    tags: Tags = Field(default_factory=list)


class ContactPatch(Input):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})  # at least one field to change

    name: Name | SkipJsonSchema[None] = None  # may be left out, never cleared
    email: EmailText | None = None
    phone: Phone | None = None
    company: Company | None = None
    notes: Notes | None = None
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
        "name": text(doc, "name", most=NAME),
        "email": optional_text(doc, "email", EMAIL),
        "phone": optional_text(doc, "phone", PHONE),
        "company": optional_text(doc, "company", COMPANY),
        "notes": optional_text(doc, "notes", NOTES),
        "tags": texts(doc, "tags"),
        "created_at": moment(doc, "created_at"),
        "updated_at": moment(doc, "updated_at"),
    }
