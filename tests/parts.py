"""A service's parts driven from a test with no socket: an outbox that keeps what a session sends,
sessions on the running parts (see the `run` fixture), accounts, and waiting with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from models.users import RegisterIn
from service.accounts import Seen, User
from service.context import Context
from service.realtime.session import Session

from .harness import unique_email


class Outbox:
    """What a session sent, and how it asked to be cut off; `room` frames fit before it is "full"."""

    def __init__(self, room: int = 1000) -> None:
        self.frames: list[dict[str, Any]] = []
        self.room = room
        self.aborted: tuple[int, str] | None = None

    def push(self, frame: str) -> bool:
        if len(self.frames) >= self.room:
            return False
        self.frames.append(json.loads(frame))
        return True

    async def push_wait(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    def abort(self, code: int, reason: str) -> None:
        self.aborted = (code, reason)

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.frames]


@asynccontextmanager
async def session(context: Context, out: Outbox | None = None) -> AsyncIterator[Session]:
    opened = Session(out or Outbox(), context.hub, context.roster, context.accounts, context.db, context.settings,
                     context.writes)  # fmt: skip
    try:
        yield opened
    finally:
        opened.shut()
        await opened.forget()


async def account(context: Context, name: str = "Ann") -> tuple[User, str]:
    data = RegisterIn(email=unique_email(name), password="correct horse", name=name)
    return await context.accounts.register(data, Seen("127.0.0.1", "tests"))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
