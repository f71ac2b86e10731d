"""Accounts: registration and login payloads, and the public shape of a user."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from .common import SPACE, STRIPPED, Input, Output, Trim, ident, moment, required_text, text

MAX_PASSWORD = 1024  # argon2 hashes any length; a bound keeps a huge password from costing CPU

# One @, something before it, a domain with a dot inside, no whitespace but around (trimmed). The
# pattern is the rule: the OpenAPI document shows it, and _email is the same check, spelled in Python.
# RFC 5322's specials are refused too: a mail server reads `a,b@x` or `"a"<b@x>` as other mailboxes than
# the string stored, and the mailbox that proves an address must be the one stored.
SPECIALS = r',;:<>"()\[\]\\'
# Control characters and `?` (which RFC 2047's encoded words, `=?utf-8?q?...?=`, need) are refused too: a
# header cannot hold the one and shows the other as another address.
NOT = f"{SPACE}{SPECIALS}?\\x00-\\x1f\\x7f-\\x9f@"
EMAIL_PATTERN = f"^[{SPACE}]*[^{NOT}]+@[^{NOT}.][^{NOT}]*\\.[^{NOT}]*[^{NOT}.][{SPACE}]*$"


def _email(value: str) -> str:
    """Trimmed and lower-cased, once the pattern has accepted it."""
    return value.strip(STRIPPED).lower()


Email = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN), AfterValidator(_email)]


class RegisterIn(Input):
    email: Email
    password: str = Field(min_length=8, max_length=MAX_PASSWORD)  # as typed: spaces are characters
    name: Annotated[str, required_text(100), Trim]


class LoginIn(Input):
    email: Annotated[str, Field(min_length=1, max_length=254), Trim]
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class UserOut(Output):
    id: str
    email: str
    name: str
    created_at: str
    email_verified: bool


class UserRef(Output):
    id: str
    name: str


class AuthOut(Output):
    user: UserOut
    token: str


class MeOut(Output):
    user: UserOut


class VerifyIn(Input):
    token: str = Field(min_length=1, max_length=200)


class ForgotIn(Input):
    email: Email


class ResetIn(Input):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=MAX_PASSWORD)


class PasswordIn(Input):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    password: str = Field(min_length=8, max_length=MAX_PASSWORD)


class SessionOut(Output):
    id: str
    created_at: str
    last_used_at: str | None
    user_agent: str | None
    address: str | None
    current: bool


class SessionPage(Output):
    items: list[SessionOut]
    next: str | None


def user_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": ident(doc["_id"]), "email": text(doc, "email"), "name": text(doc, "name"),
            "created_at": moment(doc, "created_at"), "email_verified": doc.get("email_verified") is True}  # fmt: skip


def session_out(doc: dict[str, Any], public_id: str, current: bool) -> dict[str, Any]:
    """A session as its owner sees it; fields the shell left out or mistyped read as null."""
    used = doc.get("last_used_at")
    return {"id": public_id, "created_at": moment(doc, "created_at"),
            "last_used_at": moment(doc, "last_used_at") if isinstance(used, datetime) else None,
            "user_agent": _optional(doc.get("user_agent")), "address": _optional(doc.get("address")),
            "current": current}  # fmt: skip


def _optional(value: object, longest: int = 256) -> str | None:
    return value[:longest] if isinstance(value, str) else None
