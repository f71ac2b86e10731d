"""The application factory: configuration, clients on `app.ctx`, blueprints, middleware, errors."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from sanic import Request, Sanic
from sanic.config import Config
from sanic.constants import HTTP_METHODS
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import BaseHTTPResponse, HTTPResponse, json

from handlers import blueprints

from .config import Settings
from .context import AppState, bearer_token, context, seen
from .database import DatabaseError, failure
from .errors import BY_STATUS, BadRequest, MethodNotAllowed, RateLimited, ServiceError, Unauthorized
from .lifecycle import draining, running
from .metrics import observe
from .payments.catalog import Catalog
from .tokens import token_hash

log = logging.getLogger("murmuration")

MAX_BODY = 2 * 1024 * 1024
SHUTDOWN_GRACE = 5.0
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

App = Sanic[Config, AppState]


def error_for(exception: BaseException) -> ServiceError:
    """Any exception as the ServiceError a client may see; internals are logged, never shown."""
    if isinstance(exception, ServiceError):
        return exception
    if isinstance(exception, SanicException):
        status = int(getattr(exception, "status_code", 500) or 500)
        if status == 405:
            allow = (getattr(exception, "headers", None) or {}).get("Allow", "")
            return MethodNotAllowed(str(exception) or None, allow=allow)
        cls = BY_STATUS.get(status)
        if cls is not None:
            message = str(exception) if status != 500 else None  # 413: Sanic says which limit (body, header)
            return cls(message or None)
        if status < 500:
            # A status the contract has no code for (426 for /ws without an upgrade, 416 for a bad
            # Range): the request cannot be served as sent, which is what bad_request says.
            return BadRequest(str(exception) or "the request cannot be served as sent")
    if isinstance(exception, DatabaseError):
        return failure(exception)
    log.exception("unhandled error", exc_info=exception)
    return ServiceError()


def error_response(error: ServiceError) -> HTTPResponse:
    return json(error.body(), status=error.status, headers=error.headers())


class JSONErrorHandler(ErrorHandler):
    """Every failure, Sanic's own 404/405/413 included, as the contract's JSON error body."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        error = error_for(exception)
        if isinstance(error, MethodNotAllowed) and not error.allow:
            error.allow = allowed(request)
        return error_response(error)


def allowed(request: Request) -> str:
    """The methods a path answers, for a 405's `Allow`. Sanic names them only when the path has one
    handler; a path with several (GET and PATCH on /contacts/{id}) is asked method by method."""
    found = []
    for method in HTTP_METHODS:
        try:
            request.app.router.get(request.path, method, request.headers.get("host"))
        except SanicException:
            continue
        found.append(str(method))
    return ", ".join(found)


def create_app(settings: Settings | None = None) -> App:
    settings = settings or Settings.from_env()
    _configure_logging(settings.log_level)
    state = AppState(settings, Catalog.load(settings.catalog_path))
    app: App = Sanic("murmuration", ctx=state, error_handler=JSONErrorHandler())
    app.config.REQUEST_MAX_SIZE = MAX_BODY
    # The contract's limit is enforced by the connection, after reading the frame, so the client gets
    # a clean 1009 close; the transport's own (abrupt) limit only stops what is far beyond it.
    app.config.WEBSOCKET_MAX_SIZE = settings.ws_max_frame * 4
    # 0: not Sanic's keepalive (a task and a timer per socket): the realtime engine pings every socket
    # every 20 s from one timer, and cuts off one whose pong has not come by the next (keepalive.py).
    app.config.WEBSOCKET_PING_INTERVAL = 0
    app.config.PROXIES_COUNT = settings.proxies_count
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    # Sanic's main process waits 10 s for a worker to exit: draining connections and the life cycle's
    # teardown (payment loops finishing the order in hand, in parallel with the drain) fit in that.
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = SHUTDOWN_GRACE

    for blueprint in blueprints():
        app.blueprint(blueprint)

    app.before_server_start(_start)
    app.before_server_stop(_draining)
    app.after_server_stop(_stop)
    # First of all request middleware, blueprints' included (payments checks its gateway after it): a
    # caller is rate limited and authenticated before any route-specific answer.
    app.register_middleware(_guard, "request", priority=100)
    app.register_middleware(_measure, "response")
    return app


def _configure_logging(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


async def _start(app: App) -> None:
    """Enter the life cycle (lifecycle.py); it stays open until the server has stopped."""
    state = app.ctx
    state.context = await state.stack.enter_async_context(running(state.settings, state.catalog, SHUTDOWN_GRACE))


async def _draining(app: App) -> None:
    """The server stops taking requests: background work starts winding down while connections drain."""
    draining(app.ctx.context, SHUTDOWN_GRACE)


async def _stop(app: App) -> None:
    await app.ctx.stack.aclose()


async def _guard(request: Request) -> HTTPResponse | None:
    """Rate limit (per user once the token is known, else per address), then authenticate unless the
    route is public (`ctx_public=True`)."""
    request.ctx.started = time.perf_counter()
    route = request.route
    if route is None:
        return None  # unrouted: Sanic answers 404 / 405 through the error handler
    route_ctx: Any = route.ctx
    if getattr(route_ctx, "unmetered", False):
        return None
    ctx = context(request)
    token = bearer_token(request)
    # A token pays from its user's bucket only once it is known to be valid (cached); until then the
    # caller's address pays, so made-up tokens cannot each get a fresh bucket (or a free lookup).
    key = token_hash(token) if token else None  # hashed once per request
    known = ctx.accounts.cached(key) if key else None
    if known is not None:
        wait = ctx.limiter.hit(str(known.id))
    else:
        wait = ctx.anon_limiter.hit(request.remote_addr or request.ip)
    if wait:
        return error_response(RateLimited(wait))
    if getattr(route_ctx, "public", False):
        return None
    if token is None or key is None:
        return error_response(Unauthorized())
    try:
        request.ctx.user = user = known or await ctx.accounts.authenticate(token)
    except ServiceError as error:
        return error_response(error)
    request.ctx.token = token
    if ctx.accounts.due(key):
        await ctx.accounts.touch(key, seen(request))
    if request.method in WRITES:
        try:
            ctx.writes.spend(user.id, len(request.body or b""))
        except ServiceError as error:
            return error_response(error)
    return None


async def _measure(request: Request, response: BaseHTTPResponse) -> None:
    response.headers["X-Instance"] = cast(AppState, request.app.ctx).settings.instance
    started = getattr(request.ctx, "started", None)
    if started is None:
        return
    route = request.route.path if request.route is not None else "unmatched"
    # The parser takes any token as a method: one outside HTTP's would be a label per made-up name.
    method = request.method if request.method in HTTP_METHODS else "other"
    observe(method, route, response.status, time.perf_counter() - started)
