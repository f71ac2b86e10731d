"""Payments: catalog, Braintree client tokens, orders, and Braintree's webhooks."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from models.common import page
from models.orders import CatalogOut, ClientTokenOut, OrderIn, OrderOut, OrderPage, order_out
from service import orders
from service.app import Context, context, current_user
from service.errors import BadRequest, PaymentsUnavailable
from service.gateway import BadWebhook, Gateway

from .inputs import PAGING, body, page_args
from .openapi import describe

bp = Blueprint("payments")

UNAVAILABLE = {"503": "payments_unavailable: Braintree is not configured"}


def gateway(ctx: Context) -> Gateway:
    if ctx.gateway is None:
        raise PaymentsUnavailable("payments are not configured on this service")
    return ctx.gateway


@bp.get("/catalog")
@describe("What can be bought, at server-side prices", "payments", response=CatalogOut, errors=UNAVAILABLE)
async def catalog(request: Request) -> HTTPResponse:
    ctx = context(request)
    gateway(ctx)
    items = [
        {"sku": item.sku, "name": item.name, "price": str(item.price), "currency": ctx.catalog.currency}
        for item in ctx.catalog.items.values()
    ]
    return json({"items": items})


@bp.get("/payments/client-token")
@describe("A client token for Braintree's client SDK (Drop-in)", "payments", response=ClientTokenOut,
          errors=UNAVAILABLE)  # fmt: skip
async def client_token(request: Request) -> HTTPResponse:
    ctx = context(request)
    token = await gateway(ctx).client_token()
    braintree = ctx.settings.braintree
    environment = braintree.environment if braintree else ""
    return json({"client_token": token, "environment": "local" if environment.startswith("http") else environment})


@bp.post("/orders")
@describe("Place an order; it is charged in the background (202). Needs Idempotency-Key", "payments",
          body=OrderIn, response=OrderOut, status=202, headers={"Idempotency-Key": "required: one key per order"},
          errors={**UNAVAILABLE, "409": "conflict: the key was used with a different body"})  # fmt: skip
async def place(request: Request) -> HTTPResponse:
    ctx = context(request)
    gateway(ctx)
    data = body(request, OrderIn)
    key = request.headers.get("idempotency-key")
    doc, created = await orders.create(ctx.db, ctx.catalog, current_user(request), key, data)
    if created and ctx.payments is not None:
        ctx.payments.nudge()
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json(order_out(doc), status=202, headers=headers)


@bp.get("/orders")
@describe("Your orders, newest first", "payments", response=OrderPage, errors=UNAVAILABLE, query=PAGING)
async def listing(request: Request) -> HTTPResponse:
    ctx = context(request)
    gateway(ctx)
    limit, after = page_args(request)
    docs, next_cursor = await orders.listing(ctx.db, current_user(request), limit, after)
    return json(page([order_out(doc) for doc in docs], next_cursor))


@bp.get("/orders/<order_id>")
@describe("One of your orders", "payments", response=OrderOut, errors=UNAVAILABLE)
async def get(request: Request, order_id: str) -> HTTPResponse:
    ctx = context(request)
    gateway(ctx)
    return json(order_out(await orders.mine(ctx.db, current_user(request), order_id)))


@bp.post("/payments/webhooks", ctx_public=True)
@describe("Braintree webhook (form fields bt_signature, bt_payload); a bad signature is 400", "payments",
          public=True, errors=UNAVAILABLE)  # fmt: skip
async def webhook(request: Request) -> HTTPResponse:
    ctx = context(request)
    verifier = gateway(ctx)
    form = request.form
    signature = form.get("bt_signature") if form else None
    payload = form.get("bt_payload") if form else None
    if not signature or not payload:
        raise BadRequest("bt_signature and bt_payload form fields are required")
    try:
        event = verifier.parse_webhook(signature, payload)
    except BadWebhook:
        raise BadRequest("the webhook signature does not verify") from None
    matched = False
    if event.transaction_id is not None:
        status = WEBHOOK_STATUS.get(event.kind, event.transaction_status)
        if status:
            matched = await orders.record_webhook(ctx.db, event.transaction_id, status)
    return json({"kind": event.kind, "matched": matched})


# What a webhook kind says about the transaction, when its payload does not say it itself.
WEBHOOK_STATUS = {
    "transaction_settled": "settled",
    "transaction_settlement_declined": "settlement_declined",
    "dispute_opened": "disputed",
    "dispute_lost": "dispute_lost",
    "dispute_won": "dispute_won",
    "dispute_accepted": "dispute_accepted",
}
