"""The OpenAPI document, built from the routes themselves and the pydantic shapes they declare."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sanic import Sanic

from models.common import ErrorBody

F = TypeVar("F", bound=Callable[..., Any])

ERRORS = {
    "400": "bad_request: malformed JSON, bad id or query parameter",
    "401": "unauthorized: missing, unknown or revoked token",
    "404": "not_found",
    "422": "validation_error",
    "429": "rate_limited (see Retry-After)",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    public: bool = False
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe(summary: str, tag: str, **options: Any) -> Callable[[F], F]:
    """Attach an OpenAPI operation to a handler."""

    def mark(handler: F) -> F:
        handler.__openapi__ = Operation(summary, tag, **options)  # type: ignore[attr-defined]
        return handler

    return mark


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(op: Operation, params: list[str], schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag]}
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in params
    ]
    parameters += [
        {"name": k, "in": "query", "description": v, "schema": {"type": "string"}} for k, v in op.query.items()
    ]
    parameters += [
        {"name": k, "in": "header", "description": v, "schema": {"type": "string"}} for k, v in op.headers.items()
    ]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(op.body, schemas)}}}
    ok: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": _schema(op.response, schemas)}}
    error = {"content": {"application/json": {"schema": _schema(ErrorBody, schemas)}}}
    out["responses"] = {
        str(op.status): ok,
        **{code: {"description": text, **error} for code, text in {**ERRORS, **op.errors}.items()},
    }
    if op.public:
        out["security"] = []
    return out


def document(app: Sanic[Any, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes:
        op: Operation | None = getattr(route.handler, "__openapi__", None)
        if op is None:
            continue
        params = re.findall(r"<(\w+)(?::[^>]*)?>", route.path)
        path = "/" + re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.path).strip("/")
        for method in sorted(route.methods):
            if method in ("HEAD", "OPTIONS"):
                continue
            paths.setdefault(path, {})[method.lower()] = _operation(op, params, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Murmuration",
            "version": "1.0.0",
            "description": "Realtime document service. Websocket protocol: see docs/protocol.md (GET /ws).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
