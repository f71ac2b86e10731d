"""Chat: rooms with members, messages, read markers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .common import ID_PATTERN, Input, Output, Trim, ident, listed, moment, optional_text, ref, required_text, text
from .invites import InviteOut
from .users import Email, UserRef

# Longest values, in characters: requests, stored rooms and messages that can be shown, and the validator agree.
ROOM_NAME, TEXT, CLIENT_ID = 200, 4000, 100

Text = Annotated[str, required_text(TEXT)]
ClientId = Annotated[str, Field(min_length=1, max_length=CLIENT_ID)]


class RoomIn(Input):
    name: Annotated[str, required_text(ROOM_NAME), Trim]
    members: list[Email] = Field(default_factory=list, max_length=100)


class MemberIn(Input):
    email: Email


class MessageIn(Input):
    text: Text  # kept as typed, not trimmed: leading spaces and newlines can matter (code, poems)
    client_id: ClientId | None = None


class ReadIn(Input):
    message_id: str = Field(pattern=ID_PATTERN)


class RoomOut(Output):
    id: str
    name: str
    members: list[UserRef]
    created_by: UserRef
    created_at: str


class RoomCreatedOut(RoomOut):
    invites: list[InviteOut]  # addresses that are not verified accounts yet: access once verified


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
