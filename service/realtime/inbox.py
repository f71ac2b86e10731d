"""Messages in from one websocket, in order, without a task or a queue per socket.

Sanic gives every websocket a frame assembler (an `asyncio.Queue`, two Events and two Locks: about
5 KB) and its `recv()` starts a task, a future and an `asyncio.wait` per call, so an idle socket
waiting for its next frame held all of that. The `Inbox` takes the assembler's place on the socket:
Sanic's reader (`process_events`: one frame at a time, in order) calls `put`, complete messages are
kept in order, and the connection's task takes them (`take`), waiting on one future while there
are none (`arrival`). As with Sanic's assembler, the socket stops being read while messages wait for the
connection (busy with an earlier one), so a client never makes the server hold more than one read.

The inbox must be on the socket before its first frame is read: `install` runs from Sanic's
`websocket.handler.before` signal (handlers/realtime.py), dispatched right after the handshake with
no await in between, so before any read.

Reads Sanic's `WebsocketImplProtocol.assembler`, `recv_cancel`, `pause_frames` and `resume_frames`
(checked at start by `wire.check_sanic`).
"""

from __future__ import annotations

import asyncio

from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

CLOSE_INVALID_DATA = 1007  # RFC 6455 §8.1: a text message that is not UTF-8 fails the connection
CLOSE_TOO_BIG = 1009
# Fragments of one message: the transport's size limit counts payload bytes only, so a message of
# millions of empty fragments would hold the reader (and every other socket of the process) for seconds.
MAX_FRAGMENTS = 1024


class Inbox:
    __slots__ = ("chunks", "closed", "messages", "paused", "text", "waiter", "ws")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        self.messages: list[str | bytes] = []
        self.chunks: list[bytes] | None = None  # the fragments of a message still coming
        self.text = False  # whether that message is text
        self.waiter: asyncio.Future[None] | None = None  # the connection waits for a message on it
        self.paused = False  # reading stopped until the connection has taken what waits
        self.closed = False

    @staticmethod
    def install(ws: WebsocketImplProtocol) -> Inbox:
        """The socket's inbox, put in place of Sanic's assembler if it is not yet."""
        current = ws.assembler
        if isinstance(current, Inbox):
            return current
        if current.chunks or current.message_complete.is_set():
            # Frames went to Sanic's assembler and would be lost: the signal that installs the inbox
            # before the first read did not run (handlers/realtime.py), or Sanic reads earlier now.
            raise RuntimeError("a websocket frame was read before the connection's inbox was installed")
        inbox = Inbox(ws)
        ws.assembler = inbox  # type: ignore[assignment]  # duck-typed: Sanic only calls put()
        return inbox

    # --- Sanic's side: the assembler interface --------------------------------------------

    async def put(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self.text = opcode is Opcode.TEXT
            if frame.fin:
                self._complete(frame.data)
            else:
                self.chunks = [bytes(frame.data)]
        elif opcode is Opcode.CONT and self.chunks is not None:  # the parser refuses a stray one
            if len(self.chunks) >= MAX_FRAGMENTS:
                self.chunks = None
                self.ws.fail_connection(CLOSE_TOO_BIG, f"a message in more than {MAX_FRAGMENTS} fragments")
                return
            self.chunks.append(bytes(frame.data))
            if frame.fin:
                data, self.chunks = b"".join(self.chunks), None
                self._complete(data)
        # Control frames: Sanic and the websockets library answer pings and handle closes themselves.

    def _complete(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        if self.text:
            try:
                message: str | bytes = str(data, "utf-8")
            except UnicodeDecodeError:
                self.ws.fail_connection(CLOSE_INVALID_DATA, "a text frame that is not UTF-8")
                return
        else:
            message = bytes(data)
        self.messages.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif not self.paused:
            # The connection is busy: what comes next waits in the socket, not here.
            self.paused = self.ws.pause_frames()  # type: ignore[no-untyped-call]

    # --- the connection's side ----------------------------------------------------------------
    # A message, or a future to wait on when there is none, rather than a coroutine that waits: the
    # connection's task is what an idle socket keeps, and each coroutine frame in it is kept too.

    def take(self) -> str | bytes | None:
        """The next message read, if there is one."""
        return self.messages.pop(0) if self.messages else None

    def arrival(self, timeout: float | None = None) -> asyncio.Future[None]:
        """A future done when a message has come (or `timeout` seconds have passed). Sanic cancels it,
        as it did `recv()`, when the client's close frame or the end of its stream arrives."""
        if self.paused:
            self.paused = False
            if self.ws.ws_proto.state is State.OPEN:  # a closed transport cannot resume reading
                self.ws.resume_frames()  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        # Left in place once done: Sanic cancelling a future that is done already changes nothing.
        self.ws.recv_cancel = waiter
        if timeout is not None:
            loop.call_later(timeout, _wake, waiter)
        return waiter

    def close(self) -> None:
        """Nothing more is taken: what waits, and what comes, is dropped."""
        self.closed = True
        self.messages.clear()
        self.chunks = None
        if self.ws.recv_cancel is self.waiter:
            self.ws.recv_cancel = None
        self.waiter = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
