"""Invites the caller has out: listed and withdrawn."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.common import page
from models.invites import InvitePage, invite_out
from service import invites
from service.context import context, current_user
from service.stored import shown

from .inputs import PAGING, page_args
from .openapi import describe

bp = Blueprint("invites", url_prefix="/invites")


@bp.get("/")
@describe("Invites you sent that wait for their address to be verified, newest first", "accounts",
          response=InvitePage, query=PAGING)  # fmt: skip
async def listing(request: Request) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await invites.sent(context(request).db, current_user(request), limit, after)
    return json(page(shown("invites", docs, invite_out), next_cursor))


@bp.delete("/<invite_id>")
@describe("Withdraw an invite you sent", "accounts", status=204, errors={"404": "not_found: no such invite of yours"})
async def withdraw(request: Request, invite_id: str) -> HTTPResponse:
    await invites.withdraw(context(request).db, current_user(request), invite_id)
    return empty()
