"""Accounts: register, login, logout, me."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from models.users import AuthOut, LoginIn, MeOut, RegisterIn, user_out
from service.context import context, current_user
from service.errors import RateLimited

from .inputs import body
from .openapi import describe

bp = Blueprint("auth", url_prefix="/auth")


@bp.post("/register", ctx_public=True)
@describe("Create an account and get a token", "accounts", body=RegisterIn, response=AuthOut, status=201,
          public=True, errors={"409": "conflict: the email is taken"})  # fmt: skip
async def register(request: Request) -> HTTPResponse:
    ctx = context(request)
    data = body(request, RegisterIn)
    # Every account brings its own write budget: accounts per address are limited, per hour.
    wait = ctx.register_limiter.hit(request.remote_addr or request.ip)
    if wait:
        raise RateLimited(wait, f"at most {ctx.settings.register_limit} new accounts an hour from one address")
    user, token = await ctx.accounts.register(data)
    return json({"user": user_out(user.doc()), "token": token}, status=201)


@bp.post("/login", ctx_public=True)
@describe("Exchange email and password for a token", "accounts", body=LoginIn, response=AuthOut, public=True,
          errors={"401": "unauthorized: wrong email or password"})  # fmt: skip
async def login(request: Request) -> HTTPResponse:
    data = body(request, LoginIn)
    user, token = await context(request).accounts.login(data, request.remote_addr or request.ip)
    return json({"user": user_out(user.doc()), "token": token})


@bp.post("/logout")
@describe("Revoke the token used for this request", "accounts", status=204)
async def logout(request: Request) -> HTTPResponse:
    await context(request).accounts.logout(request.ctx.token)
    return empty()


@bp.get("/me")
@describe("The authenticated user", "accounts", response=MeOut)
async def me(request: Request) -> HTTPResponse:
    return json({"user": user_out(current_user(request).doc())})
