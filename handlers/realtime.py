"""`GET /ws`: the one websocket; the protocol lives in service/realtime/session.py."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from service.context import bearer_token, context
from service.realtime.connection import Connection

bp = Blueprint("realtime")


@bp.websocket("/ws", ctx_public=True)  # type: ignore[untyped-decorator]
async def feed(request: Request, ws: WebsocketImplProtocol) -> None:
    ctx = context(request)
    connection = Connection(ws, ctx.hub, ctx.roster, ctx.accounts, ctx.db, ctx.settings, ctx.writes)
    await connection.serve(bearer_token(request))
