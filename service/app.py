"""The application factory: configuration, clients on `app.ctx`, blueprints, middleware, errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

from sanic import Request, Sanic
from sanic.config import Config
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import BaseHTTPResponse, HTTPResponse, json

from .accounts import Accounts, User
from .catalog import Catalog
from .change import Change
from .config import Settings
from .database import Database, DatabaseError
from .errors import BY_STATUS, RateLimited, ServiceError, Unauthorized, Unavailable
from .gateway import Gateway
from .hub import Hub
from .metrics import LATENCY, REQUESTS
from .payments import Payments
from .ratelimit import RateLimiter

log = logging.getLogger("murmuration")

MAX_BODY = 2 * 1024 * 1024


class Context:
    """What every handler reaches through `request.app.ctx`; clients are set at server start."""

    settings: Settings
    db: Database
    accounts: Accounts
    hub: Hub
    catalog: Catalog
    gateway: Gateway | None
    payments: Payments | None
    limiter: RateLimiter
    anon_limiter: RateLimiter

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = Catalog.load(settings.catalog_path)
        self.gateway = None
        self.payments = None
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.anon_limiter = RateLimiter(settings.anon_rate_limit, max(10, settings.anon_rate_limit // 10))


App = Sanic[Config, Context]


def error_for(exception: BaseException) -> ServiceError:
    """Any exception as the ServiceError a client may see; internals are logged, never shown."""
    if isinstance(exception, ServiceError):
        return exception
    if isinstance(exception, SanicException):
        status = int(getattr(exception, "status_code", 500) or 500)
        cls = BY_STATUS.get(status)
        if cls is not None:
            message = str(exception) if status not in (413, 500) else None
            return cls(message or None)
        if status < 500:
            error = ServiceError(str(exception) or "request refused")
            error.status = status  # type: ignore[misc]
            return error
    if isinstance(exception, DatabaseError):
        log.error("database unavailable: %s", type(exception).__name__)
        return Unavailable("the database is unavailable; try again shortly")
    log.exception("unhandled error", exc_info=exception)
    return ServiceError()


def error_response(error: ServiceError) -> HTTPResponse:
    return json(error.body(), status=error.status, headers=error.headers())


class JSONErrorHandler(ErrorHandler):
    """Every failure, Sanic's own 404/405/413 included, as the contract's JSON error body."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        return error_response(error_for(exception))


def create_app(settings: Settings | None = None) -> App:
    settings = settings or Settings.from_env()
    _configure_logging(settings.log_level)
    app: App = Sanic("murmuration", ctx=Context(settings), error_handler=JSONErrorHandler())
    app.config.REQUEST_MAX_SIZE = MAX_BODY
    # The contract's limit is enforced by the connection, after reading the frame, so the client gets
    # a clean 1009 close; the transport's own (abrupt) limit only stops what is far beyond it.
    app.config.WEBSOCKET_MAX_SIZE = settings.ws_max_frame * 4
    app.config.WEBSOCKET_PING_INTERVAL = 20
    app.config.WEBSOCKET_PING_TIMEOUT = 20
    app.config.PROXIES_COUNT = settings.proxies_count
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.ACCESS_LOG = False
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 10.0

    from handlers import blueprints

    for blueprint in blueprints():
        app.blueprint(blueprint)

    app.before_server_start(_open_clients)
    app.before_server_stop(_stop_hub)
    app.after_server_stop(_close_clients)
    app.register_middleware(_guard, "request")
    app.register_middleware(_measure, "response")
    return app


def _configure_logging(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


async def _open_clients(app: App) -> None:
    ctx = app.ctx
    ctx.db = Database(ctx.settings.mongo_url, ctx.settings.mongo_db, app_name=f"murmuration@{ctx.settings.instance}")
    try:
        await ctx.db.prepare()
    except DatabaseError as error:
        where = ctx.settings.mongo_url.rpartition("@")[2]  # never log credentials
        log.error("cannot reach MongoDB at %s (%s): start one (`make run` does) or fix MONGO_URL", where, error)
        raise
    ctx.accounts = Accounts(ctx.db, ctx.settings, trusted=lambda: ctx.hub.healthy)
    ctx.hub = Hub(ctx.db, ctx.settings, listeners={"sessions": _forget_session(ctx.accounts)})
    ctx.hub.on_gap.append(ctx.accounts.forget_all)
    await ctx.hub.start()
    if ctx.settings.braintree is not None:
        ctx.gateway = Gateway(ctx.settings.braintree, ctx.settings.braintree_timeout)
        ctx.payments = Payments(ctx.db, ctx.gateway, ctx.settings, ctx.hub.instance_id)
        ctx.payments.start()
    else:
        log.info("payments are off: set BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY, BRAINTREE_PRIVATE_KEY")


def _forget_session(accounts: Accounts) -> Callable[[Change], None]:
    def listener(change: Change) -> None:
        if change.op == "delete":
            accounts.forget(str(change.id))

    return listener


async def _stop_hub(app: App) -> None:
    if app.ctx.payments is not None:
        await app.ctx.payments.stop(app.config.GRACEFUL_SHUTDOWN_TIMEOUT)
    await app.ctx.hub.stop()


async def _close_clients(app: App) -> None:
    await app.ctx.db.close()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _guard(request: Request) -> HTTPResponse | None:
    """Rate limit, then authenticate unless the route is public (`ctx_public=True`)."""
    request.ctx.started = time.perf_counter()
    route = request.route
    if route is None:
        return None  # unrouted: Sanic answers 404 / 405 through the error handler
    route_ctx: Any = route.ctx
    if getattr(route_ctx, "unmetered", False):
        return None
    ctx = context(request)
    token = bearer_token(request)
    wait = ctx.limiter.hit(token) if token else ctx.anon_limiter.hit(request.remote_addr or request.ip)
    if wait:
        return error_response(RateLimited(wait))
    if getattr(route_ctx, "public", False):
        return None
    if token is None:
        return error_response(Unauthorized())
    try:
        request.ctx.user = await ctx.accounts.authenticate(token)
    except ServiceError as error:
        return error_response(error)
    request.ctx.token = token
    return None


async def _measure(request: Request, response: BaseHTTPResponse) -> None:
    response.headers["X-Instance"] = request.app.ctx.settings.instance
    started = getattr(request.ctx, "started", None)
    if started is None:
        return
    route = request.route.path if request.route is not None else "unmatched"
    REQUESTS.labels(request.method, route, str(response.status)).inc()
    LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


def context(request: Request) -> Context:
    """The typed `app.ctx` (Sanic types it as a plain namespace)."""
    return cast(Context, request.app.ctx)


def current_user(request: Request) -> User:
    user: User = request.ctx.user
    return user
