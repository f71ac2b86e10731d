"""Contacts: the caller's own address book."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.common import page
from models.contacts import ContactIn, ContactOut, ContactPage, ContactPatch, contact_out
from service import contacts
from service.context import context, current_user
from service.stored import one, shown

from .inputs import PAGING, TEXT_ARG, body, page_args, text_arg
from .openapi import Param, describe

Q = Param("matches name, email or company, case-insensitively, literally", TEXT_ARG)

bp = Blueprint("contacts", url_prefix="/contacts")


@bp.post("/")
@describe("Add a contact", "contacts", body=ContactIn, response=ContactOut, status=201)
async def create(request: Request) -> HTTPResponse:
    doc = await contacts.create(context(request).db, current_user(request), body(request, ContactIn))
    return json(contact_out(doc), status=201)


@bp.get("/")
@describe("List the caller's contacts, newest first", "contacts", response=ContactPage,
          query={"q": Q, **PAGING})  # fmt: skip
async def search(request: Request) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await contacts.search(
        context(request).db, current_user(request), text_arg(request, "q"), limit, after
    )
    return json(page(shown("contacts", docs, contact_out), next_cursor))


@bp.get("/<contact_id>")
@describe("One contact", "contacts", response=ContactOut)
async def get(request: Request, contact_id: str) -> HTTPResponse:
    doc = await contacts.get(context(request).db, current_user(request), contact_id)
    return json(one("contacts", doc, contact_out))


@bp.patch("/<contact_id>")
@describe("Change some fields of a contact (null clears an optional one)", "contacts", body=ContactPatch,
          response=ContactOut)  # fmt: skip
async def update(request: Request, contact_id: str) -> HTTPResponse:
    patch = body(request, ContactPatch)
    doc = await contacts.update(context(request).db, current_user(request), contact_id, patch)
    return json(one("contacts", doc, contact_out))


@bp.delete("/<contact_id>")
@describe("Delete a contact", "contacts", status=204)
async def delete(request: Request, contact_id: str) -> HTTPResponse:
    await contacts.delete(context(request).db, current_user(request), contact_id)
    return empty()
