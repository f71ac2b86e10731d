"""Chat: rooms, members, messages, read markers."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.common import page
from models.invites import invite_out
from models.rooms import (
    MemberIn,
    MessageIn,
    MessageOut,
    MessagePage,
    ReadIn,
    RoomCreatedOut,
    RoomIn,
    RoomOut,
    RoomPage,
    message_out,
    room_out,
)
from service import rooms
from service.context import context, current_user
from service.invites import Invited
from service.stored import maybe, one, shown

from .inputs import PAGING, body, page_args
from .invited import INVITED, invited
from .openapi import describe

bp = Blueprint("rooms", url_prefix="/rooms")

HIDDEN = {"404": "not_found: no such room, or you are not a member"}


@bp.post("/")
@describe("Create a room; you are a member; `invites` lists the addresses that are not verified accounts yet",
          "chat", body=RoomIn, response=RoomCreatedOut, status=201)  # fmt: skip
async def create(request: Request) -> HTTPResponse:
    ctx = context(request)
    room, made = await rooms.create(ctx.db, ctx.outbox, current_user(request), body(request, RoomIn))
    return json({**one("rooms", room, room_out), "invites": shown("invites", made, invite_out)}, status=201)


@bp.get("/")
@describe("Your rooms, newest first, each with `unread` (up to 100) and `last_message`", "chat", response=RoomPage,
          query=PAGING)  # fmt: skip
async def listing(request: Request) -> HTTPResponse:
    db, user = context(request).db, current_user(request)
    limit, after = page_args(request)
    listed, next_cursor = await rooms.listing(db, user, limit, after)
    return json(page([item for entry in listed if (item := _listed(*entry))], next_cursor))


@bp.post("/<room_id>/members")
@describe("Add a member by email (any member may); an address that is not a verified account gets a pending"
          " invite (202)", "chat", body=MemberIn, response=RoomOut, answers=INVITED,
          errors={**HIDDEN, "409": "conflict: the room has 10,000 members"})  # fmt: skip
async def add_member(request: Request, room_id: str) -> HTTPResponse:
    data = body(request, MemberIn)
    ctx = context(request)
    room = await rooms.add_member(ctx.db, ctx.outbox, current_user(request), room_id, data.email)
    if isinstance(room, Invited):
        return invited(room)
    return json(one("rooms", room, room_out))


@bp.delete("/<room_id>/members/<user_id>")
@describe("Leave the room, or (its creator) remove a member", "chat", response=RoomOut,
          errors={**HIDDEN, "403": "forbidden: only the room's creator removes others"})  # fmt: skip
async def remove_member(request: Request, room_id: str, user_id: str) -> HTTPResponse:
    room = await rooms.remove_member(context(request).db, current_user(request), room_id, user_id)
    return json(one("rooms", room, room_out))


@bp.post("/<room_id>/messages")
@describe("Send a message; a retry with the same client_id returns the first one (200)", "chat",
          body=MessageIn, response=MessageOut, status=201, errors=HIDDEN,
          also={"200": "a retry: the message first sent with this client_id"})  # fmt: skip
async def send(request: Request, room_id: str) -> HTTPResponse:
    message, created = await rooms.send(context(request).db, current_user(request), room_id, body(request, MessageIn))
    return json(one("messages", message, message_out), status=201 if created else 200)


@bp.get("/<room_id>/messages")
@describe("Messages, newest first; `next` pages to older ones", "chat", response=MessagePage, query=PAGING,
          errors=HIDDEN)  # fmt: skip
async def history(request: Request, room_id: str) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await rooms.history(context(request).db, current_user(request), room_id, limit, after)
    return json(page(shown("messages", docs, message_out), next_cursor))


@bp.post("/<room_id>/read")
@describe("Move your read marker to this message (it never moves back)", "chat", body=ReadIn, status=204,
          errors=HIDDEN)  # fmt: skip
async def read(request: Request, room_id: str) -> HTTPResponse:
    data = body(request, ReadIn)
    await rooms.read(context(request).db, current_user(request), room_id, data.message_id)
    return empty()


def _listed(room: dict[str, Any], unread: int, last: dict[str, Any] | None) -> dict[str, Any] | None:
    """A room as listed; one that cannot be shown is left out, a last message that cannot be is null."""
    shown_room = maybe("rooms", room, room_out)
    if shown_room is None:
        return None
    return {
        **shown_room,
        "unread": min(unread, rooms.UNREAD_CAP),
        "unread_capped": unread > rooms.UNREAD_CAP,
        "last_message": maybe("messages", last, message_out) if last is not None else None,
    }
