"""`GET /`: the web dashboard, a static page (handlers/static/) that talks to the public API only."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file

from service.errors import NotFound

bp = Blueprint("dashboard")

STATIC = Path(__file__).resolve().parent / "static"
FILES = {path.name for path in STATIC.iterdir() if path.suffix in (".html", ".js", ".css", ".svg")}
# The page loads nothing from elsewhere; the websocket is this origin's /ws. no-cache: a deploy's new
# page and modules are used at once (revalidated, not downloaded again when unchanged).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@bp.get("/", ctx_public=True)
async def page(request: Request) -> HTTPResponse:
    return await _serve("index.html")


@bp.get("/app/<name>", ctx_public=True)
async def asset(request: Request, name: str) -> HTTPResponse:
    if name not in FILES:
        raise NotFound("no such file")
    return await _serve(name)


async def _serve(name: str) -> HTTPResponse:
    return await file(STATIC / name, headers=HEADERS)
