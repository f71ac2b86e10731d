"""The payment gateway adapter: Braintree's official SDK, called off the event loop.

No SDK object leaves this module: callers get `Record`s, `Refusal`s and `Webhook`s. The SDK is
synchronous and its timeout is per socket read, not per call, so every call runs in a thread of this
module's own bounded set (never the default pool that password hashing uses) under a total deadline:
past it the caller gets `GatewayUnavailable` and goes on, while the thread, a daemon, finishes on its
own and only then frees its slot. A call that may have reached the gateway says so (`sent`): the
worker then never repeats it before the gateway's record is conclusive. Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import braintree
from braintree.exceptions.authentication_error import AuthenticationError
from braintree.exceptions.authorization_error import AuthorizationError
from braintree.exceptions.http.timeout_error import ConnectTimeoutError
from braintree.exceptions.invalid_signature_error import InvalidSignatureError
from braintree.exceptions.not_found_error import NotFoundError
from braintree.exceptions.too_many_requests_error import TooManyRequestsError
from braintree.exceptions.upgrade_required_error import UpgradeRequiredError

from ..config import Braintree
from .states import Record

log = logging.getLogger("murmuration.gateway")
T = TypeVar("T")

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
# Errors raised before the gateway could act on the request: repeating the call is safe at once.
NOT_SENT = (ConnectTimeoutError, TooManyRequestsError, AuthenticationError, AuthorizationError, UpgradeRequiredError)


class GatewayUnavailable(Exception):
    """The gateway did not answer usably (deadline, 5xx, connection): try again later. `sent`: the
    request may have reached the gateway, so what it asked for may have happened."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class BadWebhook(Exception):
    """A webhook whose signature or payload does not verify."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call refused before any transaction changed: validation errors (consumed nonce, ...)."""

    errors: list[dict[str, str]]

    def has(self, code: str) -> bool:
        return any(error["code"] == code for error in self.errors)


@dataclass(frozen=True, slots=True)
class Webhook:
    kind: str
    transaction_id: str | None
    order_id: str | None  # our order id, as the sale carried it to the gateway


class Threads:
    """At most `size` gateway calls at once, each answered within `deadline` seconds or given up."""

    def __init__(self, size: int, deadline: float) -> None:
        self.slots = asyncio.Semaphore(size)
        self.deadline = deadline

    async def run(self, what: str, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        try:
            await asyncio.wait_for(self.slots.acquire(), self.deadline)
        except TimeoutError:
            raise GatewayUnavailable(f"{what}: every gateway thread is busy", sent=False) from None
        future: asyncio.Future[T] = loop.create_future()
        threading.Thread(target=self._work, args=(loop, future, function, args), name="braintree-call",
                         daemon=True).start()  # fmt: skip
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, ends - loop.time()))
        except TimeoutError:
            raise GatewayUnavailable(f"{what}: no answer within {self.deadline:g} s") from None
        finally:
            future.cancel()  # given up (or cancelled): the thread's late answer is dropped; it still frees its slot

    def _work(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], function: Callable[..., T],
              args: tuple[Any, ...]) -> None:  # fmt: skip
        try:
            result = function(*args)
        except BaseException as error:
            answer: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            answer = functools.partial(future.set_result, result)

        def settle() -> None:
            self.slots.release()
            if not future.done():  # the caller may have given up meanwhile
                answer()

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)


def _environment(name: str) -> Any:
    if name.startswith("http"):
        # A local gateway emulator over plain HTTP; the SDK would send it through any proxy set in
        # the environment (it ignores NO_PROXY), so proxies are dropped for this process.
        for variable in PROXY_VARIABLES:
            os.environ.pop(variable, None)
        url = urlsplit(name)
        return braintree.Environment("local", url.hostname, str(url.port or 80), f"http://{url.hostname}", False, None)
    return braintree.Environment.parse_environment(name)


def _record(transaction: Any) -> Record:
    refunds = getattr(transaction, "refund_ids", None) or []
    refunded = getattr(transaction, "refunded_transaction_id", None)
    order_id = getattr(transaction, "order_id", None)
    return Record(
        id=str(transaction.id),
        kind=str(getattr(transaction, "type", None) or "sale"),
        status=str(transaction.status),
        amount=Decimal(str(transaction.amount)),
        refunds=tuple(str(refund) for refund in refunds),
        refunded=str(refunded) if refunded else None,
        order_id=str(order_id) if order_id else None,
        code=getattr(transaction, "processor_response_code", None)
        or getattr(transaction, "gateway_rejection_reason", None),
        text=getattr(transaction, "processor_response_text", None),
    )


def _refusal(result: Any) -> Refusal:
    """The validation errors of a failed SDK result, as `{code, message}` entries."""
    errors = [{"code": str(e.code), "message": str(e.message)} for e in result.errors.deep_errors]
    return Refusal(errors or [{"code": "refused", "message": str(result.message)}])


def _outcome(result: Any) -> Record | Refusal:
    """A transaction made (even declined) or changed, or the refusal of one."""
    if result.is_success or getattr(result, "transaction", None) is not None:
        return _record(result.transaction)
    return _refusal(result)


class Gateway:
    def __init__(self, config: Braintree, timeout: float = 20.0, threads: int = 8) -> None:
        self.merchant_id = config.merchant_id
        self.threads = Threads(threads, timeout)
        # Client tokens, which any signed-in user can ask for, get threads of their own: a flood of them
        # (or a gateway slow to make them) never takes the threads charging and giving back need.
        self.token_threads = Threads(max(1, threads // 2), timeout)
        self.sdk = braintree.BraintreeGateway(
            braintree.Configuration(
                environment=_environment(config.environment),
                merchant_id=config.merchant_id,
                public_key=config.public_key,
                private_key=config.private_key,
                timeout=timeout,
                wrap_http_exceptions=True,
            )
        )

    async def _call(self, what: str, function: Any, *args: Any, threads: Threads | None = None) -> Any:
        try:
            return await (threads or self.threads).run(what, function, *args)
        except (NotFoundError, InvalidSignatureError, GatewayUnavailable):
            raise
        except NOT_SENT as error:
            log.warning("gateway %s refused before acting: %s", what, type(error).__name__)
            raise GatewayUnavailable(f"{what}: {type(error).__name__}", sent=False) from None
        except Exception as error:  # 5xx, a connection, or an answer the SDK cannot read (not XML, ...)
            log.warning("gateway %s failed: %s", what, type(error).__name__)
            raise GatewayUnavailable(f"{what}: {type(error).__name__}") from None

    async def client_token(self) -> str:
        try:
            return str(await self._call("client token", self.sdk.client_token.generate, threads=self.token_threads))
        except NotFoundError:  # a URL that is no gateway: not one we can use now
            raise GatewayUnavailable("client token: NotFoundError", sent=False) from None

    async def sale(self, order_id: str, amount: Decimal, nonce: str) -> Record | Refusal:
        params = {
            "amount": str(amount),
            "payment_method_nonce": nonce,
            "order_id": order_id,
            "options": {"submit_for_settlement": True},
        }
        return _outcome(await self._call("sale", self.sdk.transaction.sale, params))

    async def find(self, transaction_id: str) -> Record | None:
        try:
            return _record(await self._call("find", self.sdk.transaction.find, transaction_id))
        except NotFoundError:
            return None

    async def records(self, order_id: str) -> list[Record]:
        """Every transaction made for our order id (Braintree's `order_id`: sales and their refunds),
        as the gateway's search shows them, which may lag behind what was just made."""

        def search() -> list[Any]:
            return list(self.sdk.transaction.search(braintree.TransactionSearch.order_id == order_id).items)

        return [_record(t) for t in await self._call("search", search)]

    async def void(self, transaction_id: str) -> Record | Refusal:
        return _outcome(await self._call("void", self.sdk.transaction.void, transaction_id))

    async def refund(self, transaction_id: str) -> Record | Refusal:
        return _outcome(await self._call("refund", self.sdk.transaction.refund, transaction_id))

    def parse_webhook(self, signature: str, payload: str) -> Webhook:
        try:
            return _webhook(self.sdk.webhook_notification.parse(signature, payload))
        except Exception as error:  # a bad signature, or a signed payload the SDK cannot read
            raise BadWebhook(type(error).__name__) from None


def _webhook(notification: Any) -> Webhook:
    transaction = getattr(notification, "transaction", None)
    dispute = getattr(notification, "dispute", None)
    if transaction is None and dispute is not None:
        transaction = getattr(dispute, "transaction", None)
    transaction_id = getattr(transaction, "id", None)
    order_id = getattr(transaction, "order_id", None)
    return Webhook(
        kind=str(notification.kind),
        transaction_id=str(transaction_id) if transaction_id else None,
        order_id=str(order_id) if order_id else None,
    )
