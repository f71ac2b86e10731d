"""One websocket, driven: frames read from the socket go to its session, the session's frames go
out through its outbox, and the socket is closed the way the session says."""

from __future__ import annotations

import asyncio

from sanic.server.websockets.impl import WebsocketImplProtocol

from ..accounts import Accounts
from ..budget import WriteBudget
from ..config import Settings
from ..database import Database
from ..metrics import SOCKETS
from .hub import Hub
from .outbox import Outbox
from .roster import Roster
from .session import Session, State
from .wire import Wire


class Connection:
    def __init__(
        self,
        ws: WebsocketImplProtocol,
        hub: Hub,
        roster: Roster,
        accounts: Accounts,
        db: Database,
        settings: Settings,
        writes: WriteBudget,
    ) -> None:
        self.ws = ws
        self.settings = settings
        self.outbox = Outbox(Wire(ws), settings.ws_send_queue, settings.ws_send_bytes)
        self.session = Session(self.outbox, hub, roster, accounts, db, settings, writes)

    async def serve(self, header_token: str | None) -> None:
        try:
            await self._authenticate(header_token)
            if self.session.state is State.OPEN:
                SOCKETS.inc()
                try:
                    while self.session.state is State.OPEN:
                        await self._next()
                finally:
                    SOCKETS.dec()
            closing = self.session.closing
            if closing is not None:
                await self.ws.close(closing.code, closing.reason)
        finally:
            self.session.shut()
            # Shielded: Sanic cancels the handler when the socket drops, and these records must
            # still go, or the user would stay "online" until this instance's heartbeat stops.
            await asyncio.shield(self._finish())

    async def _authenticate(self, header_token: str | None) -> None:
        """With the upgrade request's token, at once; else from the first frames, within the time allowed."""
        if header_token is not None:
            await self.session.authenticate(header_token)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ws_auth_timeout
        while self.session.state is State.AUTHENTICATING and (remaining := deadline - loop.time()) > 0:
            await self._next(remaining)
        self.session.timed_out()

    async def _next(self, timeout: float | None = None) -> None:
        raw = await self.ws.recv(timeout=timeout)
        if raw is not None:
            await self.session.receive(raw)

    async def _finish(self) -> None:
        await self.outbox.close()
        await self.session.forget()
