"""Accounts: registration and login payloads, and the public shape of a user."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from .common import Input, Output, ident, moment, text

MAX_PASSWORD = 1024  # argon2 hashes any length; a bound keeps a huge password from costing CPU


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith(".") or " " in value:
        raise ValueError("not a valid email address")
    return value.lower()


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]


class RegisterIn(Input):
    email: Email
    password: str = Field(min_length=8, max_length=MAX_PASSWORD)
    name: str = Field(min_length=1, max_length=100)


class LoginIn(Input):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class UserOut(Output):
    id: str
    email: str
    name: str
    created_at: str


class UserRef(Output):
    id: str
    name: str


class AuthOut(Output):
    user: UserOut
    token: str


class MeOut(Output):
    user: UserOut


def user_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": ident(doc["_id"]), "email": text(doc, "email"), "name": text(doc, "name"),
            "created_at": moment(doc, "created_at")}  # fmt: skip
