"""A websocket session's protocol, driven with frames and no socket (the websockets library's sans-I/O
idea): the real service parts behind it (the life cycle against the test replica set), and in front
of it an outbox that keeps what it was sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from models.contacts import ContactIn
from service import contacts
from service.context import Context
from service.realtime.session import CLOSE_TOO_BIG, CLOSE_TOO_SLOW, CLOSE_UNAUTHENTICATED, State
from service.realtime.wire import SANIC_PINNED, check_sanic
from service.tokens import token_hash

from .harness import ROOT
from .parts import Outbox, account, session, until


def send(frame: dict[str, Any]) -> str:
    return json.dumps(frame)


def test_a_new_session_accepts_only_an_auth_frame(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        out = Outbox()
        async with session(context, out) as s:
            await s.receive(send({"type": "subscribe", "id": "s1", "stream": "contacts"}))
            await s.receive(send({"type": "auth"}))
            await s.receive("not json")
            assert s.state is State.AUTHENTICATING and s.subs == {}
            assert [(f["type"], f["code"]) for f in out.frames] == [
                ("error", "unauthorized"), ("error", "unauthorized"), ("error", "bad_request"),
            ]  # fmt: skip

    run(scenario)


def test_an_auth_frame_with_a_good_token_opens_the_session_counted_online(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        user, token = await account(context)
        out = Outbox()
        async with session(context, out) as s:
            await s.receive(send({"type": "auth", "token": "mm_wrong"}))
            assert s.state is State.AUTHENTICATING and out.types() == ["error"]
            await s.receive(send({"type": "auth", "token": token}))
            assert s.state is State.OPEN and s.user == user
            assert out.frames[-1] == {"type": "ready", "user": {**out.frames[-1]["user"], "id": str(user.id)}}
            assert await context.db.connections.count_documents({"_id": s.id, "user": user.id}) == 1
            assert context.hub.board.count == 1  # `ready` comes once this process counts it
        assert await context.db.connections.count_documents({"_id": s.id}) == 0

    run(scenario)


def test_a_bad_header_token_ends_the_session_with_4001(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        async with session(context) as s:
            await s.authenticate("mm_not-a-token")
            assert s.state is State.CLOSING and s.closing is not None
            assert s.closing.code == CLOSE_UNAUTHENTICATED

    run(scenario)


def test_no_auth_in_time_ends_the_session_with_4001_but_an_open_one_is_left_alone(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        async with session(context) as waiting:
            waiting.timed_out()
            assert waiting.state is State.CLOSING and waiting.closing is not None
            assert (waiting.closing.code, waiting.closing.reason) == (
                CLOSE_UNAUTHENTICATED, "no authentication within the time allowed",
            )  # fmt: skip
        _, token = await account(context)
        async with session(context) as opened:
            await opened.authenticate(token)
            opened.timed_out()
            assert opened.state is State.OPEN and opened.closing is None

    run(scenario)


def test_a_frame_over_the_size_limit_ends_the_session_with_1009_and_later_frames_are_ignored(
    run: Callable[..., None],
) -> None:
    async def scenario(context: Context) -> None:
        _, token = await account(context)
        out = Outbox()
        async with session(context, out) as s:
            await s.authenticate(token)
            await s.receive("x" * 1025)
            assert s.state is State.CLOSING and s.closing is not None and s.closing.code == CLOSE_TOO_BIG
            await s.receive(send({"type": "ping"}))
            assert out.types() == ["ready"]

    run(scenario, WS_MAX_FRAME="1024")


def test_an_open_session_answers_ping_and_refuses_unknown_or_malformed_frames(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        _, token = await account(context)
        out = Outbox()
        async with session(context, out) as s:
            await s.authenticate(token)
            for frame in ({"type": "ping"}, {"type": "nope", "id": "x"}, {"type": []}, {"type": {"a": 1}},
                          {"type": "auth", "token": token}, [1, 2]):  # fmt: skip
                await s.receive(send(frame))  # type: ignore[arg-type]
            assert s.state is State.OPEN
            assert [(f["type"], f.get("code"), f.get("id")) for f in out.frames[1:]] == [
                ("pong", None, None),
                ("error", "bad_request", "x"),
                ("error", "bad_request", None),
                ("error", "bad_request", None),
                ("error", "conflict", None),
                ("error", "bad_request", None),
            ]

    run(scenario)


def test_a_subscription_id_is_taken_until_unsubscribed_and_events_reach_it(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        user, token = await account(context)
        out = Outbox()
        async with session(context, out) as s:
            await s.authenticate(token)
            await s.receive(send({"type": "subscribe", "id": "c", "stream": "contacts"}))
            await s.receive(send({"type": "subscribe", "id": "c", "stream": "contacts"}))
            assert [(f["type"], f.get("code")) for f in out.frames[1:]] == [("subscribed", None), ("error", "conflict")]
            created = await contacts.create(context.db, user, ContactIn(name="Bob"))
            await until(lambda: out.types()[-1] == "event")
            assert out.frames[-1]["sub"] == "c" and out.frames[-1]["id"] == str(created["_id"])
            await s.receive(send({"type": "unsubscribe", "id": "c"}))
            await s.receive(send({"type": "unsubscribe", "id": "c"}))
            assert [(f["type"], f.get("code")) for f in out.frames[-2:]] == [
                ("unsubscribed", None),
                ("error", "bad_request"),
            ]
            assert s.subs == {} and not context.hub.subscriptions

    run(scenario)


def test_a_session_that_cannot_keep_up_is_cut_off_with_4008_and_dropped_by_the_hub(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        user, token = await account(context)
        out = Outbox(room=2)  # ready, subscribed: then full
        async with session(context, out) as s:
            await s.authenticate(token)
            await s.receive(send({"type": "subscribe", "id": "c", "stream": "contacts"}))
            assert context.hub.subscriptions
            await contacts.create(context.db, user, ContactIn(name="Bob"))
            await until(lambda: s.state is State.CLOSED)
            assert out.aborted is not None and out.aborted[0] == CLOSE_TOO_SLOW
            assert s.subs == {} and not context.hub.subscriptions

    run(scenario)


def test_the_sanic_internals_the_wire_reads_are_checked_at_start() -> None:
    check_sanic()  # the pinned Sanic has them
    assert f"sanic=={SANIC_PINNED}\n" in (ROOT / "requirements.txt").read_text()

    class Changed:
        __slots__ = ("transport",)  # a Sanic without `_can_write`

    with pytest.raises(RuntimeError, match=f"install the pinned Sanic {SANIC_PINNED}"):
        check_sanic(protocol=Changed)
    with pytest.raises(RuntimeError, match=r"HttpProtocol\._callback_check_timeouts"):
        check_sanic(http=Changed)  # a Sanic whose timeout check adopt.py could not cancel


class Asking:
    """The database, except that asking `sessions` for a document says so first."""

    def __init__(self, db: Any, asked: asyncio.Event) -> None:
        self.db, self.asked = db, asked

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    @property
    def sessions(self) -> Any:
        asked, collection = self.asked, self.db.sessions

        class Sessions:
            async def find_one(self, *args: Any, **kwargs: Any) -> Any:
                asked.set()
                return await collection.find_one(*args, **kwargs)

        return Sessions()


def test_a_revocation_heard_during_a_lookup_keeps_the_token_out_of_the_cache(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        _, token = await account(context)
        asked = asyncio.Event()
        real = context.accounts.db
        context.accounts.db = Asking(real, asked)  # type: ignore[assignment]
        try:
            lookup = asyncio.create_task(context.accounts.identify(token))
            await asyncio.wait_for(asked.wait(), 10)  # the lookup is waiting on MongoDB
            context.accounts.forget(token_hash(token))  # what the sessions observer does on a logout elsewhere
            await lookup
        finally:
            context.accounts.db = real
        assert context.accounts.cached(token_hash(token)) is None
        await context.accounts.identify(token)  # nothing revoked meanwhile: cached
        assert context.accounts.cached(token_hash(token)) is not None

    run(scenario)
