"""Chat: rooms, members, messages, read markers."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.common import page
from models.rooms import (
    MemberIn,
    MessageIn,
    MessageOut,
    MessagePage,
    ReadIn,
    RoomIn,
    RoomOut,
    RoomPage,
    message_out,
    room_listed,
    room_out,
)
from service import rooms
from service.context import context, current_user

from .inputs import PAGING, body, page_args
from .openapi import describe

bp = Blueprint("rooms", url_prefix="/rooms")

HIDDEN = {"404": "not_found: no such room, or you are not a member"}


@bp.post("/")
@describe("Create a room; you are a member", "chat", body=RoomIn, response=RoomOut, status=201)
async def create(request: Request) -> HTTPResponse:
    room = await rooms.create(context(request).db, current_user(request), body(request, RoomIn))
    return json(room_out(room), status=201)


@bp.get("/")
@describe("Your rooms, newest first, each with `unread` and `last_message`", "chat", response=RoomPage, query=PAGING)
async def listing(request: Request) -> HTTPResponse:
    db, user = context(request).db, current_user(request)
    limit, after = page_args(request)
    listed, next_cursor = await rooms.listing(db, user, limit, after)
    return json(page([room_listed(doc, unread, last) for doc, unread, last in listed], next_cursor))


@bp.post("/<room_id>/members")
@describe("Add a member by email (any member may)", "chat", body=MemberIn, response=RoomOut, errors=HIDDEN)
async def add_member(request: Request, room_id: str) -> HTTPResponse:
    data = body(request, MemberIn)
    return json(room_out(await rooms.add_member(context(request).db, current_user(request), room_id, data.email)))


@bp.delete("/<room_id>/members/<user_id>")
@describe("Leave the room, or (its creator) remove a member", "chat", response=RoomOut, errors=HIDDEN)
async def remove_member(request: Request, room_id: str, user_id: str) -> HTTPResponse:
    return json(room_out(await rooms.remove_member(context(request).db, current_user(request), room_id, user_id)))


@bp.post("/<room_id>/messages")
@describe("Send a message; a retry with the same client_id returns the first one (200)", "chat",
          body=MessageIn, response=MessageOut, status=201, errors=HIDDEN)  # fmt: skip
async def send(request: Request, room_id: str) -> HTTPResponse:
    message, created = await rooms.send(context(request).db, current_user(request), room_id, body(request, MessageIn))
    return json(message_out(message), status=201 if created else 200)


@bp.get("/<room_id>/messages")
@describe("Messages, newest first; `next` pages to older ones", "chat", response=MessagePage, query=PAGING,
          errors=HIDDEN)  # fmt: skip
async def history(request: Request, room_id: str) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await rooms.history(context(request).db, current_user(request), room_id, limit, after)
    return json(page([message_out(doc) for doc in docs], next_cursor))


@bp.post("/<room_id>/read")
@describe("Move your read marker to this message (it never moves back)", "chat", body=ReadIn, status=204,
          errors=HIDDEN)  # fmt: skip
async def read(request: Request, room_id: str) -> HTTPResponse:
    data = body(request, ReadIn)
    await rooms.read(context(request).db, current_user(request), room_id, data.message_id)
    return empty()
