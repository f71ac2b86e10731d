"""Operations: health, metrics, the OpenAPI document and its offline docs page."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import swagger_ui_bundle
import ujson
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, file, html, json, raw

from models.operations import HealthOut
from service.context import context
from service.errors import NotFound
from service.health import check as health_check
from service.metrics import CONTENT_TYPE, exposition

from .openapi import describe, document

bp = Blueprint("operations")

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
ASSET_FILES = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Murmuration API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});</script>
</body></html>"""


@bp.get("/health", ctx_public=True, ctx_unmetered=True)
@describe("Liveness and readiness: 200 ok, or 503 degraded", "operations", response=HealthOut, public=True,
          also={"503": "degraded: MongoDB, the change stream or a background task is unhealthy"})  # fmt: skip
async def health(request: Request) -> HTTPResponse:
    healthy, body = await health_check(context(request))
    return json(body, status=200 if healthy else 503)


@bp.get("/metrics", ctx_public=True, ctx_unmetered=True)
@describe("Prometheus metrics (text format)", "operations", public=True, content="text/plain")
async def metrics(request: Request) -> HTTPResponse:
    return raw(exposition(), content_type=CONTENT_TYPE)


@bp.get("/openapi.json", ctx_public=True)
@describe("This OpenAPI document", "operations", public=True, content="application/json")
async def openapi(request: Request) -> HTTPResponse:
    return raw(_openapi(request.app), content_type="application/json")


@functools.cache
def _openapi(app: Sanic[Any, Any]) -> bytes:
    """Built once per worker: the routes do not change while it runs (it took ~70 ms a request)."""
    return ujson.dumps(document(app, app.ctx.catalog.items), ensure_ascii=False).encode()


@bp.get("/docs", ctx_public=True)
@describe("Interactive API docs (works offline)", "operations", public=True, content="text/html")
async def docs(request: Request) -> HTTPResponse:
    return html(DOCS_PAGE)


@bp.get("/docs/assets/<name>", ctx_public=True)
async def docs_asset(request: Request, name: str) -> HTTPResponse:
    if name not in ASSET_FILES:
        raise NotFound("no such asset")
    return await file(ASSETS / name, max_age=86400)
