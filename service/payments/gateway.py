"""The payment gateway adapter: Braintree's official SDK, called off the event loop.

No SDK object leaves this module: callers get `Charge`s and `Webhook`s. The SDK is synchronous,
so every call runs in a thread of its own, a daemon: a call still waiting on the gateway when the
worker stops must not keep the process alive (the order was marked `sale_attempted` before the sale,
so whoever claims it next looks the sale up at the gateway first). Credentials are never logged.
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
import requests
from braintree.exceptions.braintree_error import BraintreeError
from braintree.exceptions.invalid_signature_error import InvalidSignatureError
from braintree.exceptions.not_found_error import NotFoundError

from ..config import Braintree

log = logging.getLogger("murmuration.gateway")
T = TypeVar("T")

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class GatewayUnavailable(Exception):
    """The gateway did not answer usably (timeout, 5xx, connection): try again later."""


class BadWebhook(Exception):
    """A webhook whose signature or payload does not verify."""


@dataclass(frozen=True, slots=True)
class Charge:
    """A gateway transaction, as much of it as orders need."""

    id: str
    status: str  # Braintree's: authorized, submitted_for_settlement, settled, processor_declined, ...
    amount: Decimal
    code: str | None  # processor response code, or the gateway rejection reason
    text: str | None

    @property
    def succeeded(self) -> bool:
        return self.status in ("authorized", "submitted_for_settlement", "settling", "settled", "settlement_pending")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A sale refused before any transaction existed: validation errors (consumed nonce, ...)."""

    errors: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Webhook:
    kind: str
    transaction_id: str | None
    transaction_status: str | None


async def _in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # the caller may have been cancelled meanwhile
            outcome()

    def work() -> None:
        try:
            result = function(*args)
        except BaseException as error:
            answer: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            answer = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, answer)

    threading.Thread(target=work, name="braintree-call", daemon=True).start()
    return await future


def _environment(name: str) -> Any:
    if name.startswith("http"):
        # A local gateway emulator over plain HTTP; the SDK would send it through any proxy set in
        # the environment (it ignores NO_PROXY), so proxies are dropped for this process.
        for variable in PROXY_VARIABLES:
            os.environ.pop(variable, None)
        url = urlsplit(name)
        return braintree.Environment("local", url.hostname, str(url.port or 80), f"http://{url.hostname}", False, None)
    return braintree.Environment.parse_environment(name)


def _charge(transaction: Any) -> Charge:
    return Charge(
        id=str(transaction.id),
        status=str(transaction.status),
        amount=Decimal(str(transaction.amount)),
        code=getattr(transaction, "processor_response_code", None)
        or getattr(transaction, "gateway_rejection_reason", None),
        text=getattr(transaction, "processor_response_text", None),
    )


def _refusal(result: Any) -> Refusal:
    """The validation errors of a failed SDK result, as `{code, message}` entries."""
    errors = [{"code": str(e.code), "message": str(e.message)} for e in result.errors.deep_errors]
    return Refusal(errors or [{"code": "refused", "message": str(result.message)}])


def _outcome(result: Any) -> Charge | Refusal:
    return _charge(result.transaction) if result.is_success else _refusal(result)


class Gateway:
    def __init__(self, config: Braintree, timeout: float = 20.0) -> None:
        self.merchant_id = config.merchant_id
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

    async def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return await _in_daemon_thread(function, *args)
        except (NotFoundError, InvalidSignatureError):
            raise
        except (BraintreeError, requests.RequestException, OSError) as error:
            log.warning("gateway %s failed: %s", what, type(error).__name__)
            raise GatewayUnavailable(f"{what}: {type(error).__name__}") from None

    async def client_token(self) -> str:
        return str(await self._call("client token", self.sdk.client_token.generate))

    async def sale(self, order_id: str, amount: Decimal, nonce: str) -> Charge | Refusal:
        params = {
            "amount": str(amount),
            "payment_method_nonce": nonce,
            "order_id": order_id,
            "options": {"submit_for_settlement": True},
        }
        result = await self._call("sale", self.sdk.transaction.sale, params)
        if result.is_success or result.transaction is not None:
            return _charge(result.transaction)
        return _refusal(result)

    async def find(self, transaction_id: str) -> Charge | None:
        try:
            return _charge(await self._call("find", self.sdk.transaction.find, transaction_id))
        except NotFoundError:
            return None

    async def find_by_order(self, order_id: str) -> list[Charge]:
        """Every transaction made for our order id (Braintree's `order_id`), to never charge twice."""

        def search() -> list[Any]:
            return list(self.sdk.transaction.search(braintree.TransactionSearch.order_id == order_id).items)

        return [_charge(t) for t in await self._call("search", search)]

    async def void(self, transaction_id: str) -> Charge | Refusal:
        return _outcome(await self._call("void", self.sdk.transaction.void, transaction_id))

    async def refund(self, transaction_id: str) -> Charge | Refusal:
        return _outcome(await self._call("refund", self.sdk.transaction.refund, transaction_id))

    def parse_webhook(self, signature: str, payload: str) -> Webhook:
        try:
            notification = self.sdk.webhook_notification.parse(signature, payload)
        except (InvalidSignatureError, BraintreeError, ValueError, KeyError) as error:
            raise BadWebhook(type(error).__name__) from None
        transaction = getattr(notification, "transaction", None)
        dispute = getattr(notification, "dispute", None)
        if transaction is None and dispute is not None:
            transaction = getattr(dispute, "transaction", None)
        return Webhook(
            kind=str(notification.kind),
            transaction_id=str(transaction.id) if transaction is not None else None,
            transaction_status=str(getattr(transaction, "status", "") or "") or None,
        )
