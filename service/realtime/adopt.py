"""A Sanic websocket, made lighter right after its handshake, before anything is read from it and
before its own tasks first run (handlers/realtime.py calls `adopt` from Sanic's
`websocket.handler.before` signal, which Sanic dispatches with no await since the handshake):

- its frame assembler gives way to the connection's inbox (inbox.py: about 5 KB less a socket);
- its `data_finished_fut`, made as `asyncio.shield(loop.create_future())`, becomes a plain future.
  Nothing holds the shielded inner future but the shield itself, and Sanic only completes, cancels,
  or awaits (in the socket's auto-closer) the outer one, which a plain future does the same; the
  shield's second future and two callbacks were about 0.8 KB a socket. Swapped only while the
  auto-closer has not started, so it awaits the new one;
- Sanic's timeout check, a timer armed for 30 s (half its shortest HTTP timeout) when the connection
  was made, is cancelled: once the handler has upgraded it, that check only returns ("timeouts
  disabled"), but until it fires the timer holds the protocol, so a socket closed within 30 s kept
  all its objects (about 40) that long after its close.

These are Sanic internals: `wire.check_sanic` verifies at start that the pinned Sanic has them.
"""

from __future__ import annotations

import inspect

from sanic.server.websockets.impl import WebsocketImplProtocol

from .inbox import Inbox


def adopt(ws: WebsocketImplProtocol) -> Inbox:
    inbox = Inbox.install(ws)
    protocol = ws.io_proto
    check = getattr(protocol, "_callback_check_timeouts", None)
    if check is not None:
        check.cancel()
        protocol._callback_check_timeouts = None  # type: ignore[union-attr]
    closer, finished = ws.auto_closer_task, ws.data_finished_fut
    coro = closer.get_coro() if closer is not None else None
    if (
        inspect.iscoroutine(coro)
        and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
        and finished is not None
        and not finished.done()
        and ws.loop is not None
    ):
        ws.data_finished_fut = ws.loop.create_future()
        finished.cancel()  # the shield's callbacks let go of each other
    return inbox
