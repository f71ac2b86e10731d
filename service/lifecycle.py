"""The life cycle of a worker: one owner builds its parts in order and tears them down in reverse.

    database -> hub (stream open, board loaded) -> outbox -> accounts -> roster (first beat) -> payments
    -> background tasks, under one supervisor: the hub's follower, the roster's heartbeat, the mail
    worker, the payment loops and the payment sweep

Teardown runs the other way: payment loops finish the order in hand (bounded) and give back
unstarted leases, the other tasks are cancelled, this instance's records go, the stream closes,
the database client closes last. The hub is built before accounts because the token cache is
trusted only while the hub follows its stream.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from .accounts import Accounts
from .budget import WriteBudget
from .coediting.editors import Editors
from .coediting.keeper import Keeper
from .config import Settings
from .context import Context
from .database import Database, DatabaseError
from .heap import Heap, Pauses
from .mail.compose import Composer
from .mail.outbox import Outbox
from .mail.smtp import Mailer
from .payments.catalog import Catalog
from .payments.gateway import Gateway
from .payments.worker import Payments
from .ratelimit import RateLimiter
from .realtime.change import Change
from .realtime.hub import Hub, Observer
from .realtime.roster import Roster
from .realtime.wire import check_sanic
from .supervisor import Supervisor

log = logging.getLogger("murmuration")


def instance_id(settings: Settings) -> str:
    """This worker process's identity in MongoDB (heartbeats, connection records, payment leases)."""
    return f"{settings.instance}/{os.getpid()}/{secrets.token_hex(3)}"


@asynccontextmanager
async def running(settings: Settings, catalog: Catalog, shutdown_grace: float) -> AsyncIterator[Context]:
    """Every part of a worker, started; on exit, stopped in reverse."""
    check_sanic()
    async with AsyncExitStack() as stack:
        tasks = Supervisor()
        heap = _heap(settings, tasks, stack)
        db = await _database(settings, stack)
        hub = Hub(db, settings)
        mailer = Mailer(settings.smtp, settings.smtp_timeout, settings.mail_from) if settings.smtp is not None else None
        outbox = Outbox(db, settings, mailer, Composer(db, settings))
        accounts = Accounts(db, settings, outbox, trusted=hub.is_following)
        roster = Roster(db, settings, instance_id(settings))
        hub.observe("sessions", _forgetting(accounts, _revoked(accounts)))
        # An account changed on any instance (verified, a new password): its cached copies go.
        hub.observe("users", _forgetting(accounts, lambda change: accounts.forget_user(change.id)))
        hub.observe("connections", roster.observe)
        hub.observe("sessions", roster.observe_sessions)
        hub.nudge = roster.nudged.set  # a replay waiting for the stream to move past its end: beat now
        editors = Editors(db, settings, roster.instance_id)
        hub.attach(editors)
        stack.push_async_callback(editors.close)
        await roster.beat()
        stack.push_async_callback(roster.leave)
        await hub.open()
        stack.push_async_callback(hub.close)
        tasks.start("hub-follow", hub.follow)
        tasks.start("roster-heartbeat", roster.heartbeat)
        stack.push_async_callback(_stop_following, hub, roster, tasks)
        _mail(outbox, tasks, stack)
        tasks.start("coedit-keeper", Keeper(db, settings).run)
        stack.push_async_callback(tasks.stop, ["coedit-keeper"])  # before the database closes under it
        gateway, payments = _payments(settings, db, roster.instance_id, catalog)
        if payments is not None:
            loops = [f"payments-{i}" for i in range(payments.loops)]
            for name in loops:
                tasks.start(name, payments.run)
            if loops:  # an instance that takes no payment work (PAYMENT_WORKERS=0) does not sweep either
                loops.append("payments-sweep")
                tasks.start("payments-sweep", payments.sweep_forever)
            stack.push_async_callback(_stop_payments, payments, tasks, loops, shutdown_grace)
        yield Context(
            settings=settings,
            db=db,
            accounts=accounts,
            outbox=outbox,
            hub=hub,
            roster=roster,
            editors=editors,
            catalog=catalog,
            gateway=gateway,
            payments=payments,
            supervisor=tasks,
            limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
            anon_limiter=RateLimiter(settings.anon_rate_limit, max(10, settings.anon_rate_limit // 10)),
            writes=WriteBudget(settings.write_budget),
            register_limiter=RateLimiter(settings.register_limit / 60, settings.register_limit),
            heap=heap,
        )


async def _database(settings: Settings, stack: AsyncExitStack) -> Database:
    db = Database(settings.mongo_url, settings.mongo_db, app_name=f"murmuration@{settings.instance}")
    stack.push_async_callback(db.close)
    try:
        await db.prepare()
    except DatabaseError as error:
        where = settings.mongo_url.rpartition("@")[2]  # never log credentials
        log.error("cannot reach MongoDB at %s (%s): start one (`make run` does) or fix MONGO_URL", where, error)
        raise
    return db


def _heap(settings: Settings, tasks: Supervisor, stack: AsyncExitStack) -> Heap:
    """Pauses timed always; the freeze policy (heap.py) unless GC_FREEZE_SECONDS=0."""
    pauses = Pauses()
    heap = Heap(settings.gc_freeze, settings.gc_thaw, pauses)
    pauses.install()
    stack.callback(pauses.remove)
    if heap.enabled:
        stack.callback(heap.release)
    tasks.start("heap", heap.run)
    stack.push_async_callback(tasks.stop, ["heap"])
    return heap


def _forgetting(accounts: Accounts, forget: Callable[[Change], None]) -> Observer:
    """An observer that drops what `forget` says a change makes stale from the token cache; a broken
    stream may have hidden changes, so then the whole cache goes."""

    def observe(change: Change | None) -> None:
        if change is None or change.op == "drop":
            accounts.forget_all()
        else:
            forget(change)

    return observe


def _revoked(accounts: Accounts) -> Callable[[Change], None]:
    """A deleted session (a logout on any instance, an expiry) leaves the token cache at once."""

    def forget(change: Change) -> None:
        if change.ends_session:
            accounts.forget(str(change.id))

    return forget


def _mail(outbox: Outbox, tasks: Supervisor, stack: AsyncExitStack) -> None:
    if outbox.mailer is None:
        log.warning(
            "mail is off: set SMTP_URL (and MAIL_FROM); verification and reset letters wait in the outbox until then"
        )
        return
    tasks.start("mail", outbox.run)
    stack.push_async_callback(_stop_mail, outbox, tasks)


async def _stop_mail(outbox: Outbox, tasks: Supervisor) -> None:
    """The letter in hand is sent (within the send's deadline) rather than cut off and sent again later."""
    outbox.wind_down()
    await tasks.stop(["mail"], grace=outbox.settings.smtp_timeout)


def _payments(settings: Settings, db: Database, owner: str, catalog: Catalog) -> tuple[Gateway | None, Payments | None]:
    if settings.braintree is None:
        log.info("payments are off: set BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY, BRAINTREE_PRIVATE_KEY")
        return None, None
    gateway = Gateway(settings.braintree, settings.braintree_timeout, settings.braintree_threads)
    return gateway, Payments(db, gateway, settings, owner, catalog)


async def _stop_following(hub: Hub, roster: Roster, tasks: Supervisor) -> None:
    """The follower and the heartbeat end by themselves between reads; cancelled only if they do not."""
    hub.wind_down()
    roster.wind_down()
    await tasks.stop(["hub-follow", "roster-heartbeat"], grace=3.0)


def draining(context: Context, grace: float) -> None:
    """Shutdown has begun (the server drains its connections): payment loops stop claiming now, so
    the orders in hand finish while connections drain, not after."""
    if context.payments is not None:
        context.payments.finish_up(grace)


async def _stop_payments(payments: Payments, tasks: Supervisor, loops: list[str], grace: float) -> None:
    """Finish the orders in hand (within `grace` of when shutdown began), then give back the leases of
    orders not yet sent to the gateway (one cut off mid-sale is looked up there by whoever claims it)."""
    remaining = payments.finish_up(grace)
    await tasks.stop(loops, remaining)
    await payments.release()
