"""One websocket, driven: messages read from the socket (its inbox) go to its session, the session's
frames go out through its outbox, the process's keepalive pings it, and the socket is closed the way
the session says.

An idle connection is its objects and one task waiting on one future: no reader task, no ping task
(inbox.py, keepalive.py).
"""

from __future__ import annotations

import asyncio
import logging

from sanic.server.websockets.impl import WebsocketImplProtocol

from ..accounts import Accounts
from ..budget import WriteBudget
from ..config import Settings
from ..database import Database
from ..heap import Heap
from ..metrics import SOCKETS
from .hub import Hub
from .inbox import Inbox
from .keepalive import PING_INTERVAL
from .outbox import Outbox
from .roster import Roster
from .session import Session, State
from .wire import Wire

log = logging.getLogger("murmuration.ws")


class Connection:
    __slots__ = ("heap", "inbox", "keepalive", "outbox", "session", "settings", "slot", "wire", "ws")

    def __init__(
        self,
        ws: WebsocketImplProtocol,
        hub: Hub,
        roster: Roster,
        accounts: Accounts,
        db: Database,
        settings: Settings,
        writes: WriteBudget,
        heap: Heap,
    ) -> None:
        self.ws = ws
        self.heap = heap
        self.settings = settings
        self.inbox = Inbox.install(ws)
        self.wire = Wire(ws)
        self.outbox = Outbox(self.wire, settings.ws_send_queue, settings.ws_send_bytes)
        self.session = Session(self.outbox, hub, roster, accounts, db, settings, writes)
        self.keepalive = hub.keepalive
        self.slot = -1

    async def serve(self, header_token: str | None) -> None:
        self.slot = self.keepalive.add(self)  # from the start, as Sanic's keepalive was
        self.heap.opened_socket()
        try:
            await self._authenticate(header_token)
            if self.session.state is State.OPEN:
                SOCKETS.inc()
                try:
                    while self.session.state is State.OPEN:
                        raw = self.inbox.take()
                        if raw is None:
                            await self.inbox.arrival()
                        else:
                            await self.session.receive(raw)
                finally:
                    SOCKETS.dec()
            closing = self.session.closing
            if closing is not None:
                await self.ws.close(closing.code, closing.reason)
        finally:
            self.heap.closed_socket()  # what it leaves frozen counts towards the next thaw
            self.keepalive.discard(self, self.slot)
            self.inbox.close()
            self.session.shut()
            # Shielded: Sanic cancels the handler when the socket drops, and these records must
            # still go, or the user would stay "online" until this instance's heartbeat stops.
            await asyncio.shield(self._finish())

    def beat(self) -> None:
        """The keepalive's call, every PING_INTERVAL seconds: ping, or cut off a peer that never
        answered the last ping (1011)."""
        if not self.wire.ping():
            log.info("a websocket did not answer its ping within %.0fs: closed (1011)", PING_INTERVAL)

    async def _authenticate(self, header_token: str | None) -> None:
        """With the upgrade request's token, at once; else from the first frames, within the time allowed."""
        if header_token is not None:
            await self.session.authenticate(header_token)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ws_auth_timeout
        while self.session.state is State.AUTHENTICATING and (remaining := deadline - loop.time()) > 0:
            raw = self.inbox.take()
            if raw is None:
                await self.inbox.arrival(remaining)
            else:
                await self.session.receive(raw)
        self.session.timed_out()

    async def _finish(self) -> None:
        await self.outbox.close()
        await self.session.forget()
