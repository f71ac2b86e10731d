"""Server frames written straight to the socket, each encoded once for a whole audience.

Sanic's `ws.send` builds the websocket frame again for every recipient and goes through a lock and
two awaits; fanning one event out to 5,000 sockets paid that 5,000 times. A server frame is unmasked,
so its bytes are the same for every recipient: `encode_text` builds them once per frame string (the
router hands one str object to all the subscribers of an event that chose the same subscription id,
as clients of one app do) and `Wire.write` is one `transport.write`.

Flow control reads Sanic's private `SanicProtocol._can_write` (the event its transport pauses and
resumes). `check_sanic` verifies at start that the installed Sanic still has it.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import sanic
from sanic.server.protocols.base_protocol import SanicProtocol
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.protocol import State

TEXT = 0x81  # FIN + text opcode
SANIC_PINNED = "25.12.1"  # requirements.txt: the version this module was written and tested against


def check_sanic(protocol: type = SanicProtocol, websocket: type = WebsocketImplProtocol) -> None:
    """Refuse to start on a Sanic whose websocket internals are not the ones this module reads."""
    slots = getattr(protocol, "__slots__", ())
    fields = getattr(websocket, "__annotations__", {})
    if "_can_write" not in slots or "transport" not in slots or not {"io_proto", "ws_proto"} <= set(fields):
        raise RuntimeError(
            f"Sanic {sanic.__version__} changed the websocket internals service/realtime/wire.py reads "
            f"(SanicProtocol._can_write, WebsocketImplProtocol.io_proto); install the pinned Sanic "
            f"{SANIC_PINNED} (pip install -r requirements.txt) or adapt wire.py"
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
