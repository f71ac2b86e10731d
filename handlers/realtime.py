"""`GET /ws`: the one websocket; the protocol lives in service/connection.py."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request

from service.app import bearer_token, context
from service.connection import Connection

bp = Blueprint("realtime")


@bp.websocket("/ws", ctx_public=True)  # type: ignore[untyped-decorator]
async def feed(request: Request, ws: Any) -> None:
    ctx = context(request)
    await Connection(ws, ctx.hub, ctx.accounts, ctx.db, ctx.settings).serve(bearer_token(request))
