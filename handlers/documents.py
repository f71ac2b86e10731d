"""Documents: CRUD with ETag / If-Match, collaborators, revisions, presence."""

from __future__ import annotations

import re
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.common import page
from models.documents import (
    CollaboratorIn,
    DocumentIn,
    DocumentOut,
    DocumentPage,
    DocumentPatch,
    PresenceOut,
    RevisionPage,
    document_out,
    presence_entry,
    presence_summary,
    revision_out,
)
from service import documents
from service.coediting.editors import etag
from service.context import context, current_user
from service.invites import Invited
from service.stored import one, shown

from .inputs import PAGING, body, page_args
from .invited import INVITED, invited
from .openapi import Param, describe

bp = Blueprint("documents", url_prefix="/documents")

MISSING_OR_HIDDEN = {"403": "forbidden: you may see it but not do this", "404": "not_found (or not yours to see)"}
ETAG = {"ETag": 'the version, quoted: "3"; with live edits since its save point, "<version>.<seq>"'}
IF_MATCH = Param(
    'the ETag you edited, e.g. "3" or "3.17" (or W/"3", a list, or *); another current version is a 412. '
    "A body is merged with what was typed live since that text (docs/protocol.md)"
)
TAG = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")


def answer(doc: dict[str, Any], status: int = 200) -> HTTPResponse:
    out = one("documents", doc, document_out)
    return json(out, status=status, headers={"ETag": etag(doc)})


def answer_write(request: Request, doc: dict[str, Any]) -> HTTPResponse:
    """Answer a write whose change carries the whole document (an edit keeps the previous version as
    a revision, a share sends it twice): the writer's budget pays for the document, not the request,
    so a 10-byte title change to a 1 MB body costs 1 MB."""
    context(request).writes.owe(current_user(request).id, documents.stored_size(doc))
    return answer(doc)


def if_match(request: Request) -> set[str] | None:
    """The ETags named by `If-Match` (`"3"`, `"3.17"`, `W/"3"`, lists); `*` or no header: any version."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    tags = set()
    for tag in header.split(","):
        tag = tag.strip().removeprefix("W/").strip('"')
        if TAG.match(tag):  # not "²", not 5,000 digits: no version
            tags.add(tag)
    return tags


@bp.post("/")
@describe("Create a document (you are its owner)", "documents", body=DocumentIn, response=DocumentOut,
          answer_headers=ETAG, status=201)  # fmt: skip
async def create(request: Request) -> HTTPResponse:
    doc = await documents.create(context(request).db, current_user(request), body(request, DocumentIn))
    return answer(doc, 201)


@bp.get("/")
@describe("Documents you own or collaborate on, newest first", "documents", response=DocumentPage, query=PAGING)
async def listing(request: Request) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await documents.listing(context(request).db, current_user(request), limit, after)
    return json(page(shown("documents", docs, document_out), next_cursor))


@bp.get("/<document_id>")
@describe("One document, with its version as ETag", "documents", response=DocumentOut, answer_headers=ETAG,
          errors=MISSING_OR_HIDDEN)  # fmt: skip
async def get(request: Request, document_id: str) -> HTTPResponse:
    # Shaped (or a 409) once, by answer(): no need for visible() to check it first.
    doc = await documents.visible(context(request).db, current_user(request), document_id, checked=False)
    return answer(doc)


@bp.patch("/<document_id>")
@describe("Edit (owner, editor); version + 1. With If-Match, a stale version is 412", "documents",
          body=DocumentPatch, response=DocumentOut, answer_headers=ETAG, headers={"If-Match": IF_MATCH},
          errors={**MISSING_OR_HIDDEN, "412": "precondition_failed: the document changed since your ETag"})  # fmt: skip
async def update(request: Request, document_id: str) -> HTTPResponse:
    patch = body(request, DocumentPatch)
    ctx = context(request)
    user = current_user(request)
    doc = await ctx.editors.patch(user, document_id, patch, if_match(request), ctx.settings.revisions_kept)
    return answer_write(request, doc)


@bp.delete("/<document_id>")
@describe("Delete (owner only)", "documents", status=204, errors=MISSING_OR_HIDDEN)
async def delete(request: Request, document_id: str) -> HTTPResponse:
    await documents.delete(context(request).db, current_user(request), document_id)
    return empty()


@bp.post("/<document_id>/collaborators")
@describe("Share with a user by email as editor or viewer (owner only); an address that is not a verified account"
          " gets a pending invite (202)", "documents", body=CollaboratorIn, response=DocumentOut, answer_headers=ETAG,
          answers=INVITED,
          errors={**MISSING_OR_HIDDEN, "409": "conflict: that user is the owner, or 10,000 readers"})  # fmt: skip
async def share(request: Request, document_id: str) -> HTTPResponse:
    data = body(request, CollaboratorIn)
    ctx = context(request)
    doc = await documents.add_collaborator(ctx.db, ctx.outbox, current_user(request), document_id, data)
    if isinstance(doc, Invited):
        return invited(doc)
    return answer_write(request, doc)


@bp.delete("/<document_id>/collaborators/<user_id>")
@describe("Unshare (owner), or leave (a collaborator removing themself)", "documents", response=DocumentOut,
          answer_headers=ETAG,
          errors=MISSING_OR_HIDDEN)  # fmt: skip
async def unshare(request: Request, document_id: str, user_id: str) -> HTTPResponse:
    doc = await documents.remove_collaborator(context(request).db, current_user(request), document_id, user_id)
    return answer_write(request, doc)


@bp.get("/<document_id>/revisions")
@describe("Every earlier version, newest first", "documents", response=RevisionPage, query=PAGING)
async def revisions(request: Request, document_id: str) -> HTTPResponse:
    limit, after = page_args(request)
    docs, next_cursor = await documents.revisions(context(request).db, current_user(request), document_id, limit, after)
    return json(page(shown("revisions", docs, revision_out), next_cursor))


@bp.get("/<document_id>/presence")
@describe("Who is viewing and who is editing the document now", "documents", response=PresenceOut)
async def presence(request: Request, document_id: str) -> HTTPResponse:
    entries = await documents.presence(context(request).db, current_user(request), document_id)
    viewing, editing = presence_summary(shown("presence", entries, presence_entry))
    return json({"viewing": viewing, "editing": editing})
