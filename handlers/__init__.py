"""HTTP and websocket handlers: one thin blueprint per resource.

Handlers parse a request, call `service/`, and shape the answer with `models/`; they reach the
running service through `service.context`, never `service.app` (which imports them).
"""

from __future__ import annotations

from sanic import Blueprint

from . import auth, contacts, dashboard, documents, invites, operations, payments, realtime, rooms


def blueprints() -> list[Blueprint]:
    return [
        auth.bp,
        contacts.bp,
        documents.bp,
        rooms.bp,
        invites.bp,
        payments.bp,
        operations.bp,
        realtime.bp,
        dashboard.bp,
    ]
