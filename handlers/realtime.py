"""`GET /ws`: the one websocket; the protocol lives in service/realtime/session.py."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from service.context import bearer_token, context
from service.realtime.adopt import adopt
from service.realtime.connection import Connection

bp = Blueprint("realtime")


@bp.signal("websocket.handler.before")  # type: ignore[untyped-decorator]
def lighten(request: Request, websocket: WebsocketImplProtocol) -> None:
    """Dispatched right after the handshake, before anything is read: the socket's frames go to its
    inbox from the first one (service/realtime/adopt.py). Only on routes that read through one."""
    if request.route is not None and getattr(request.route.ctx, "inbox", False):
        adopt(websocket)


@bp.websocket("/ws", ctx_public=True, ctx_inbox=True)  # type: ignore[untyped-decorator]
def feed(request: Request, ws: WebsocketImplProtocol) -> Coroutine[Any, Any, None]:
    # Not a coroutine itself: Sanic runs what it returns as the socket's task, whose frames an open
    # socket keeps for its whole life (this one would only have held the request and the context).
    ctx = context(request)
    connection = Connection(ws, ctx.hub, ctx.roster, ctx.accounts, ctx.db, ctx.settings, ctx.writes, ctx.heap)
    return connection.serve(bearer_token(request))
