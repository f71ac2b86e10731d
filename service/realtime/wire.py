"""Server frames written straight to the socket, each encoded once for a whole audience.

Sanic's `ws.send` builds the websocket frame again for every recipient and goes through a lock and
two awaits; fanning one event out to 5,000 sockets paid that 5,000 times. A server frame is unmasked,
so its bytes are the same for every recipient: `encode_text` builds them once per frame string (the
router hands one str object to all the subscribers of an event that chose the same subscription id,
as clients of one app do) and `Wire.write` is one `transport.write`.

Flow control reads Sanic's private `SanicProtocol._can_write` (the event its transport pauses and
resumes). Keepalive pings (keepalive.py) go the same way, and their pongs are told apart by Sanic's
`WebsocketImplProtocol.pings`. `check_sanic` verifies at start that the installed Sanic still has
these, and what inbox.py and adopt.py read.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import sanic
from sanic.server.protocols.base_protocol import SanicProtocol
from sanic.server.protocols.http_protocol import HttpProtocol
from sanic.server.websockets.frame import WebsocketFrameAssembler
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.protocol import State

TEXT = 0x81  # FIN + text opcode
SANIC_PINNED = "25.12.1"  # requirements.txt: the version this module was written and tested against
PING = b"mm"  # every keepalive ping's payload: a socket never has two outstanding, so it needs no other
CLOSE_NO_PONG = 1011  # what Sanic's own keepalive closes a silent peer with


def check_sanic(
    protocol: type = SanicProtocol,
    http: type = HttpProtocol,
    websocket: type = WebsocketImplProtocol,
    assembler: type = WebsocketFrameAssembler,
) -> None:
    """Refuse to start on a Sanic whose websocket internals are not the ones wire.py, inbox.py and
    adopt.py read."""
    slots = getattr(protocol, "__slots__", ())
    fields = set(getattr(websocket, "__annotations__", {}))
    methods = all(callable(getattr(websocket, name, None)) for name in ("pause_frames", "resume_frames"))
    held = set(getattr(assembler, "__slots__", ()))
    if (
        "_can_write" not in slots
        or "transport" not in slots
        or not {"io_proto", "ws_proto", "loop", "assembler", "pings", "recv_cancel"} <= fields
        or not {"data_finished_fut", "auto_closer_task"} <= fields
        or not methods
        or not {"chunks", "message_complete"} <= held
        or "_callback_check_timeouts" not in getattr(http, "__slots__", ())
    ):
        raise RuntimeError(
            f"Sanic {sanic.__version__} changed the websocket internals service/realtime/wire.py, inbox.py and "
            f"adopt.py read (SanicProtocol._can_write, HttpProtocol._callback_check_timeouts, "
            f"WebsocketImplProtocol.io_proto, .assembler, .pings, .recv_cancel, .data_finished_fut); "
            f"install the pinned Sanic {SANIC_PINNED} (pip install -r requirements.txt) or adapt them"
        )


@lru_cache(maxsize=16)
def encode_text(frame: str) -> bytes:
    """`frame` as one unmasked websocket text frame (RFC 6455 §5.2)."""
    payload = frame.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT, 127, size)
    return header + payload


class Wire:
    """The write side of one of Sanic's websockets, with its flow control."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws

    def ready(self) -> bool:
        """Open, and the transport below its high-water mark (Sanic pauses writing above it)."""
        io = self.ws.io_proto
        return (
            io is not None
            and io.transport is not None
            and io._can_write.is_set()
            and not io.transport.is_closing()
            and self.ws.ws_proto.state is State.OPEN
        )

    async def drained(self) -> bool:
        """Wait until writing may go on; False once the connection is closing."""
        io = self.ws.io_proto
        if io is None:
            return False
        await io._can_write.wait()
        return self.ready()

    def write(self, frame: str) -> None:
        io = self.ws.io_proto
        if io is not None and io.transport is not None:
            io.transport.write(encode_text(frame))

    def abort(self, code: int, reason: str) -> None:
        """Close at once, without waiting for the client (it is not reading)."""
        self.ws.fail_connection(code, reason)

    def ping(self) -> bool:
        """Ping the peer, as Sanic's keepalive would; False, and the connection failed (1011), when the
        previous ping is still unanswered. Sanic settles the ping's future and forgets it on the pong."""
        ws, io = self.ws, self.ws.io_proto
        if ws.ws_proto.state is not State.OPEN or io is None or io.transport is None or io.transport.is_closing():
            return True  # closing already: nothing to keep alive
        if PING in ws.pings:
            ws.fail_connection(CLOSE_NO_PONG)
            return False
        ws.pings[PING] = io.loop.create_future()
        ws.ws_proto.send_ping(PING)
        for data in ws.ws_proto.data_to_send():
            io.transport.write(data)
        return True
