"""Chat: rooms with members, messages, read markers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator

from .common import Input, Output, ident, listed, moment, optional_text, ref, text
from .users import Email, UserRef

# Longest values, in characters: requests, stored rooms and messages that can be shown, and the validator agree.
ROOM_NAME, TEXT, CLIENT_ID = 200, 4000, 100

Text = Annotated[str, Field(min_length=1, max_length=TEXT)]
ClientId = Annotated[str, Field(min_length=1, max_length=CLIENT_ID)]


class RoomIn(Input):
    name: str = Field(min_length=1, max_length=ROOM_NAME)
    members: list[Email] = Field(default_factory=list, max_length=100)


class MemberIn(Input):
    email: Email


class MessageIn(Input):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)

    text: Text
    client_id: ClientId | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text cannot be blank")
        return value  # kept as typed: leading spaces and newlines can matter (code, poems)


class ReadIn(Input):
    message_id: str = Field(min_length=1, max_length=64)


class RoomOut(Output):
    id: str
    name: str
    members: list[UserRef]
    created_by: UserRef
    created_at: str


class MessageOut(Output):
    id: str
    room: str
    author: UserRef
    text: str
    client_id: str | None
    created_at: str


class RoomListed(RoomOut):
    unread: int = Field(description="messages by others after your read marker, counted up to 100")
    unread_capped: bool = Field(description="an addition: true when there are more than `unread`")
    last_message: MessageOut | None


class RoomPage(Output):
    items: list[RoomListed]
    next: str | None


class MessagePage(Output):
    items: list[MessageOut]
    next: str | None


def room_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident(doc["_id"]),
        "name": text(doc, "name", most=ROOM_NAME),
        "members": [ref(member) for member in listed(doc, "members")],
        "created_by": ref(doc["created_by"]),
        "created_at": moment(doc, "created_at"),
    }


def message_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident(doc["_id"]),
        "room": ident(doc["room"]),
        "author": ref(doc["author"]),
        "text": text(doc, "text", most=TEXT),
        "client_id": optional_text(doc, "client_id", CLIENT_ID),
        "created_at": moment(doc, "created_at"),
    }


def typing_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {"room": ident(doc["room"]), "user": {"id": ident(doc["user"]), "name": text(doc, "name")}}
