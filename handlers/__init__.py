"""HTTP and websocket handlers: one thin blueprint per resource."""

from __future__ import annotations

from sanic import Blueprint


def blueprints() -> list[Blueprint]:
    from . import auth, contacts, operations

    return [auth.bp, contacts.bp, operations.bp]
