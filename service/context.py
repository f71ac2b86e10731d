"""What a handler reaches: the running service's parts (`Context`), the caller, the bearer token.

Handlers import this, never `service.app`; the app factory imports the handlers.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import cast

from sanic import Request

from .accounts import Accounts, Seen, User
from .budget import WriteBudget
from .coediting.editors import Editors
from .config import Settings
from .database import Database
from .heap import Heap
from .mail.outbox import Outbox
from .payments.catalog import Catalog
from .payments.gateway import Gateway
from .payments.worker import Payments
from .ratelimit import RateLimiter
from .realtime.hub import Hub
from .realtime.roster import Roster
from .supervisor import Supervisor


@dataclass(frozen=True, slots=True)
class Context:
    """Every client and subsystem of a running worker, complete once built (see lifecycle.py)."""

    settings: Settings
    db: Database
    accounts: Accounts
    outbox: Outbox
    hub: Hub
    roster: Roster
    editors: Editors  # live co-editing: the documents this process holds live
    catalog: Catalog
    gateway: Gateway | None  # None: Braintree is not configured, payment routes answer 503
    payments: Payments | None
    supervisor: Supervisor
    limiter: RateLimiter
    anon_limiter: RateLimiter
    writes: WriteBudget  # bytes a user may write per minute: the resume window is everyone's
    register_limiter: RateLimiter  # accounts per address per hour: each new account is a new budget
    heap: Heap  # the garbage collector's policy (heap.py)


class AppState:
    """Sanic's `app.ctx`: settings and catalog from creation on (read once, failing fast), the
    `Context` while the server runs (the life cycle held open in `stack`)."""

    context: Context  # set before the server takes requests, by service.app's start listener

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stack = AsyncExitStack()


def context(request: Request) -> Context:
    return cast(AppState, request.app.ctx).context


def current_user(request: Request) -> User:
    """The authenticated caller (set by the app's guard on every route that is not public)."""
    user: User = request.ctx.user
    return user


def bearer_token(request: Request) -> str | None:
    """The bearer token, as sent. A value no token of ours can be (not printable ASCII: a header that
    is not UTF-8, say) comes back as such, and is refused like any unknown token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def seen(request: Request) -> Seen:
    """Where a request comes from, as a session records it."""
    return Seen(request.remote_addr or request.ip, request.headers.get("user-agent", ""))
