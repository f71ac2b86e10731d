"""Payments: catalog, Braintree client tokens, orders, and Braintree's webhooks."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from models.common import page
from models.orders import (
    CatalogOut,
    ClientTokenOut,
    OrderIn,
    OrderOut,
    OrderPage,
    WebhookOut,
    catalog_out,
    order_out,
)
from service.context import context, current_user
from service.errors import BadRequest, PaymentsUnavailable
from service.payments import orders
from service.payments.gateway import BadWebhook, Gateway, GatewayUnavailable
from service.stored import one, shown

from .inputs import PAGING, body, page_args
from .openapi import Param, describe

bp = Blueprint("payments")

UNAVAILABLE = {"503": "payments_unavailable: Braintree is not configured or does not answer (or MongoDB is down)"}
IDEMPOTENCY_KEY = Param(
    "one key per order: 1..200 printable ASCII characters",
    {"type": "string", "minLength": 1, "maxLength": orders.MAX_KEY, "pattern": "^[ -~]*[!-~][ -~]*$"},
    required=True,
)


@bp.on_request
async def _configured(request: Request) -> None:
    """Every payment route needs the gateway: without Braintree settings they all answer 503."""
    gateway(request)


def gateway(request: Request) -> Gateway:
    found = context(request).gateway
    if found is None:
        raise PaymentsUnavailable("payments are not configured on this service")
    return found


@bp.get("/catalog")
@describe("What can be bought, at server-side prices", "payments", response=CatalogOut, errors=UNAVAILABLE)
async def catalog(request: Request) -> HTTPResponse:
    ctx = context(request)
    return json(catalog_out(ctx.catalog.currency, ctx.catalog.items.values()))


@bp.get("/payments/client-token")
@describe("A client token for Braintree's client SDK (Drop-in)", "payments", response=ClientTokenOut,
          errors=UNAVAILABLE)  # fmt: skip
async def client_token(request: Request) -> HTTPResponse:
    try:
        token = await gateway(request).client_token()
    except GatewayUnavailable:
        raise PaymentsUnavailable("the payment gateway does not answer; try again in a minute") from None
    settings = context(request).settings
    environment = settings.braintree.environment if settings.braintree else ""
    return json({"client_token": token, "environment": "local" if environment.startswith("http") else environment,
                 "drop_in": settings.braintree_dropin})  # fmt: skip


@bp.post("/orders")
@describe("Place an order; it is charged in the background (202). Needs Idempotency-Key", "payments",
          body=OrderIn, response=OrderOut, status=202, headers={"Idempotency-Key": IDEMPOTENCY_KEY},
          errors={**UNAVAILABLE, "409": "conflict: the key was used with a different body"})  # fmt: skip
async def place(request: Request) -> HTTPResponse:
    ctx = context(request)
    data = body(request, OrderIn)
    key = request.headers.get("idempotency-key")
    doc, created = await orders.create(ctx.db, ctx.catalog, current_user(request), key, data)
    if created and ctx.payments is not None:
        ctx.payments.nudge()
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json(one("orders", doc, order_out), status=202, headers=headers)


@bp.get("/orders")
@describe("Your orders, newest first", "payments", response=OrderPage, errors=UNAVAILABLE, query=PAGING)
async def listing(request: Request) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await orders.listing(context(request).db, current_user(request), limit, after)
    return json(page(shown("orders", docs, order_out), next_cursor))


@bp.get("/orders/<order_id>")
@describe("One of your orders", "payments", response=OrderOut, errors=UNAVAILABLE)
async def get(request: Request, order_id: str) -> HTTPResponse:
    return json(one("orders", await orders.mine(context(request).db, current_user(request), order_id), order_out))


@bp.post("/orders/<order_id>/cancel")
@describe("Give a paid order's money back: voided if not yet settled, else refunded, exactly once (202); "
          "repeating it is harmless", "payments", response=OrderOut, status=202,
          errors={**UNAVAILABLE, "409": "conflict: the order was never charged, or is being charged"})  # fmt: skip
async def cancel(request: Request, order_id: str) -> HTTPResponse:
    ctx = context(request)
    doc = await orders.cancel(ctx.db, current_user(request), order_id)
    if ctx.payments is not None:
        ctx.payments.nudge()
    return json(one("orders", doc, order_out), status=202)


@bp.post("/payments/webhooks", ctx_public=True)
@describe("Braintree webhook (form fields bt_signature, bt_payload); a bad signature is 400", "payments",
          public=True, errors=UNAVAILABLE, form=("bt_signature", "bt_payload"), response=WebhookOut)  # fmt: skip
async def webhook(request: Request) -> HTTPResponse:
    # Braintree posts a urlencoded form; any other body (multipart without a boundary, JSON) is not
    # parsed at all, so odd bodies cannot reach the form parser.
    if request.content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise BadRequest("a webhook is a form: Content-Type application/x-www-form-urlencoded")
    form = request.form
    signature = form.get("bt_signature") if form else None
    payload = form.get("bt_payload") if form else None
    if not signature or not payload:
        raise BadRequest("bt_signature and bt_payload form fields are required")
    try:
        event = gateway(request).parse_webhook(signature, payload)
    except BadWebhook:
        raise BadRequest("the webhook signature does not verify") from None
    try:
        found = await gateway(request).find(event.transaction_id) if event.transaction_id else None
    except GatewayUnavailable:  # Braintree delivers it again later
        raise PaymentsUnavailable("the payment gateway does not answer; deliver the webhook again later") from None
    ctx = context(request)
    matched = await orders.record_webhook(ctx.db, event, found)
    if matched and ctx.payments is not None:
        ctx.payments.nudge_sweep()
        ctx.payments.nudge()
    return json({"kind": event.kind, "matched": matched})
