"""The OpenAPI document, built from the routes themselves and the pydantic shapes they declare.

It is meant to be exact: every constraint the models enforce is a JSON Schema keyword in it, ids have
their pattern wherever they appear, and every status a route can answer is listed with its body.
`tests/test_openapi.py` holds it to that with Schemathesis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sanic import Sanic

from models.common import ID_PATTERN, ErrorBody

F = TypeVar("F", bound=Callable[..., Any])

ID = {"type": "string", "pattern": ID_PATTERN}
ERRORS = {
    "400": "bad_request: malformed JSON, or a header or query parameter that cannot be used",
    "401": "unauthorized: missing, unknown or revoked token",
    "404": "not_found",
    "409": "conflict: stored data the service cannot read (an operator can repair it), or a conflicting write",
    "422": "validation_error",
    "429": "rate_limited (see Retry-After)",
    "503": "unavailable: MongoDB cannot be reached right now; try again",
}
PUBLIC_ERRORS = {code: text for code, text in ERRORS.items() if code not in ("401", "409")}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


@dataclass(frozen=True)
class Param:
    """A query parameter or a request header."""

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    public: bool = False
    query: dict[str, Param] = field(default_factory=dict)
    headers: dict[str, Param] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    also: dict[str, str] = field(default_factory=dict)  # more statuses answered with the same body as `status`
    content: str | None = None  # the media type of a body that is not JSON (metrics, the docs page)
    answer_headers: dict[str, str] = field(default_factory=dict)  # headers of the success answer
    form: tuple[str, ...] = ()  # required fields of a form body (application/x-www-form-urlencoded)
    answers: dict[str, tuple[str, type[BaseModel]]] = field(default_factory=dict)  # other successes, own body


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


def _parameters(op: Operation, path_params: list[str]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": ID} for name in path_params
    ]
    for where, params in (("query", op.query), ("header", op.headers)):
        parameters += [
            {"name": name, "in": where, "description": p.description, "required": p.required, "schema": p.schema}
            for name, p in params.items()
        ]
    return parameters


def _success(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": _schema(op.response, schemas)}}
    elif op.content is not None:
        ok["content"] = {op.content: {"schema": {}}}
    if op.answer_headers:
        ok["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                         for name, text in op.answer_headers.items()}  # fmt: skip
    return ok


def _answer(text: str, model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _schema(model, schemas)}}}


def _operation(op: Operation, path_params: list[str], schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag]}
    parameters = _parameters(op, path_params)
    if parameters:
        out["parameters"] = parameters
    errors = {**(PUBLIC_ERRORS if op.public else ERRORS), **op.errors}
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(op.body, schemas)}}}
        errors.setdefault("413", "payload_too_large: the body is over 2 MiB")
    if op.form:
        fields = {name: {"type": "string", "minLength": 1} for name in op.form}
        form = {"type": "object", "properties": fields, "required": list(op.form)}
        out["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": form}}}
        errors.setdefault("413", "payload_too_large: the body is over 2 MiB")
    ok = _success(op, schemas)
    error = {"content": {"application/json": {"schema": _schema(ErrorBody, schemas)}}}
    out["responses"] = {
        str(op.status): ok,
        **{code: {**ok, "description": text} for code, text in op.also.items()},
        **{code: _answer(text, model, schemas) for code, (text, model) in op.answers.items()},
        **{
            code: {"description": text, **error, **({"headers": RETRY_AFTER} if code == "429" else {})}
            for code, text in errors.items()
            if code not in op.also
        },
    }
    if op.public:
        out["security"] = []
    return out


def document(app: Sanic[Any, Any], skus: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes; `skus` (the catalog's) are the only ones an order takes."""
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
    line = schemas.get("LineIn", {}).get("properties", {})
    if "sku" in line and skus:
        line["sku"] = {**line["sku"], "enum": sorted(skus)}
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
