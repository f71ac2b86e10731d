"""HTTP and websocket handlers: one thin blueprint per resource."""

from __future__ import annotations

from sanic import Blueprint


def blueprints() -> list[Blueprint]:
    from . import auth, contacts, dashboard, documents, operations, payments, realtime, rooms

    return [auth.bp, contacts.bp, documents.bp, rooms.bp, payments.bp, operations.bp, realtime.bp, dashboard.bp]
