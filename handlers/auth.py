"""Accounts: register, login, logout, me; verifying the address; passwords; sessions."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.users import (
    AuthOut,
    ForgotIn,
    LoginIn,
    MeOut,
    PasswordIn,
    RegisterIn,
    ResetIn,
    SessionPage,
    VerifyIn,
    session_out,
    user_out,
)
from service import passwords, sessions, verification
from service.accounts import user_of
from service.context import bearer_token, context, current_user, seen
from service.errors import RateLimited, Unauthorized
from service.stored import shown
from service.tokens import token_hash

from .inputs import body
from .openapi import describe

bp = Blueprint("auth", url_prefix="/auth")

BAD_CODE = {"400": "bad_request: the code is unknown, used or expired"}


@bp.post("/register", ctx_public=True)
@describe("Create an account and get a token; a verification letter goes to the address", "accounts",
          body=RegisterIn, response=AuthOut, status=201, public=True,
          errors={"409": "conflict: the email is taken"})  # fmt: skip
async def register(request: Request) -> HTTPResponse:
    ctx = context(request)
    data = body(request, RegisterIn)
    # Every account brings its own write budget: accounts per address are limited, per hour.
    wait = ctx.register_limiter.hit(request.remote_addr or request.ip)
    if wait:
        raise RateLimited(wait, f"at most {ctx.settings.register_limit} new accounts an hour from one address")
    user, token = await ctx.accounts.register(data, seen(request))
    return json({"user": user_out(user.doc()), "token": token}, status=201)


@bp.post("/login", ctx_public=True)
@describe("Exchange email and password for a token", "accounts", body=LoginIn, response=AuthOut, public=True,
          errors={"401": "unauthorized: wrong email or password"})  # fmt: skip
async def login(request: Request) -> HTTPResponse:
    data = body(request, LoginIn)
    user, token = await context(request).accounts.login(data, seen(request))
    return json({"user": user_out(user.doc()), "token": token})


@bp.post("/logout")
@describe("Revoke the token used for this request", "accounts", status=204)
async def logout(request: Request) -> HTTPResponse:
    await context(request).accounts.logout(request.ctx.token)
    return empty()


@bp.get("/me")
@describe("The authenticated user", "accounts", response=MeOut)
async def me(request: Request) -> HTTPResponse:
    # Read afresh: `email_verified` may have changed since the token's user was cached.
    stored = await context(request).db.users.find_one({"_id": current_user(request).id}, {"password": 0})
    if stored is None:
        raise Unauthorized("the token's account no longer exists")
    return json({"user": user_out(user_of(stored).doc())})


@bp.post("/verify", ctx_public=True)
@describe("Prove the address with the code from the verification letter", "accounts", body=VerifyIn,
          response=MeOut, public=True,
          errors={**BAD_CODE, "401": "unauthorized: a bearer token was sent and is not a live session"})  # fmt: skip
async def verify(request: Request) -> HTTPResponse:
    data = body(request, VerifyIn)
    ctx = context(request)
    token = bearer_token(request)
    # Signed in (a bearer token that works), the code must be this account's; without one, it is the proof.
    caller = await ctx.accounts.authenticate(token) if token else None
    user = await verification.verify(ctx.accounts, data.token, caller)
    return json({"user": user_out(user.doc())})


@bp.post("/verify/resend")
@describe("Send the verification letter again (3 an hour)", "accounts", status=202,
          errors={"409": "conflict: the address is already verified"})  # fmt: skip
async def resend(request: Request) -> HTTPResponse:
    await verification.resend(context(request).accounts, current_user(request))
    return empty(status=202)


@bp.post("/password/forgot", ctx_public=True)
@describe("Mail a reset code to the address, if it has an account (the answer is the same either way)",
          "accounts", body=ForgotIn, status=202, public=True)  # fmt: skip
async def forgot(request: Request) -> HTTPResponse:
    data = body(request, ForgotIn)
    await passwords.forgot(context(request).accounts, data.email, seen(request).address)
    return empty(status=202)


@bp.post("/password/reset", ctx_public=True)
@describe("Choose a new password with the mailed code; every session of the account ends", "accounts",
          body=ResetIn, status=204, public=True, errors=BAD_CODE)  # fmt: skip
async def reset(request: Request) -> HTTPResponse:
    data = body(request, ResetIn)
    await passwords.reset(context(request).accounts, data.token, data.password)
    return empty()


@bp.post("/password")
@describe("Change the password; every other session ends, this one stays", "accounts", body=PasswordIn,
          status=204, errors={"403": "forbidden: the current password is wrong"})  # fmt: skip
async def change_password(request: Request) -> HTTPResponse:
    data = body(request, PasswordIn)
    key = token_hash(request.ctx.token)
    await passwords.change(context(request).accounts, current_user(request), key, data.current_password, data.password)
    return empty()


@bp.get("/sessions")
@describe("Your sessions, newest first", "accounts", response=SessionPage)
async def list_sessions(request: Request) -> HTTPResponse:
    current = sessions.public_id(token_hash(request.ctx.token))
    found = await sessions.mine(context(request).db, current_user(request))

    def out(doc: dict[str, object]) -> dict[str, object]:
        public = sessions.public_id(str(doc["_id"]))
        return session_out(doc, public, public == current)

    return json({"items": shown("sessions", found, out), "next": None})


@bp.delete("/sessions/<session_id>")
@describe("End a session: its token stops working, its sockets close with 4001", "accounts", status=204,
          errors={"404": "not_found: no such session of yours"})  # fmt: skip
async def end_session(request: Request, session_id: str) -> HTTPResponse:
    ctx = context(request)
    key = await sessions.end(ctx.db, current_user(request), session_id)
    ctx.accounts.forget(key)
    return empty()
