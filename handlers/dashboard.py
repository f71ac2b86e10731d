"""`GET /`: the web dashboard, a static page (handlers/static/) that talks to the public API only."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file

from service.context import context
from service.errors import NotFound

bp = Blueprint("dashboard")

STATIC = Path(__file__).resolve().parent / "static"
FILES = {path.name for path in STATIC.iterdir() if path.suffix in (".html", ".js", ".css", ".svg")}
# The page loads nothing from elsewhere; the websocket is this origin's /ws. no-cache: a deploy's new
# page and modules are used at once (revalidated, not downloaded again when unchanged).
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")  # fmt: skip
# With Braintree's Drop-in on (sandbox or production credentials), the page also loads Drop-in from
# Braintree's CDN, which talks to Braintree's API and frames its 3-D Secure and card pages: Braintree's
# hosts, and only them, are added (cards only; PayPal's hosts are not).
BRAINTREE_CSP = (
    "default-src 'self'; "
    "script-src 'self' https://js.braintreegateway.com https://assets.braintreegateway.com; "
    "style-src 'self' 'unsafe-inline' https://assets.braintreegateway.com; "
    "connect-src 'self' ws: wss: https://api.braintreegateway.com https://api.sandbox.braintreegateway.com "
    "https://client-analytics.braintreegateway.com https://client-analytics.sandbox.braintreegateway.com "
    "https://payments.braintree-api.com https://payments.sandbox.braintree-api.com; "
    "frame-src https://assets.braintreegateway.com https://*.cardinalcommerce.com; "
    "img-src 'self' data: https://assets.braintreegateway.com; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@bp.get("/", ctx_public=True)
async def page(request: Request) -> HTTPResponse:
    return await _serve(request, "index.html")


@bp.get("/app/<name>", ctx_public=True)
async def asset(request: Request, name: str) -> HTTPResponse:
    if name not in FILES:
        raise NotFound("no such file")
    return await _serve(request, name)


async def _serve(request: Request, name: str) -> HTTPResponse:
    settings = context(request).settings
    policy = BRAINTREE_CSP if settings.braintree is not None and settings.braintree_dropin else CSP
    return await file(STATIC / name, headers={**HEADERS, "Content-Security-Policy": policy})
