"""What an open websocket leaves to the process instead of keeping its own: one keepalive timer for
every socket, one heap for their sessions' expiry, a frame limiter, and frames in without a reader
task. The parts are driven without a server (a real Sanic websocket over a fake transport, sessions on
the running parts); the last test runs the keepalive against a running service."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from service.context import Context
from service.realtime.adopt import adopt
from service.realtime.deadlines import Deadlines
from service.realtime.inbox import Inbox
from service.realtime.keepalive import PING_INTERVAL, Keepalive
from service.realtime.wire import PING, Wire

from .feed import Feed
from .harness import Account, Server
from .parts import account, session, until


class Member:
    def __init__(self, expired_log: list[Member] | None = None) -> None:
        self.beats = 0
        self.expired = 0
        self.log = expired_log

    def beat(self) -> None:
        self.beats += 1

    def expire(self) -> None:
        self.expired += 1
        if self.log is not None:
            self.log.append(self)


def test_the_keepalive_beats_each_member_once_a_round_starting_a_round_after_it_joined() -> None:
    async def scenario() -> None:
        keepalive = Keepalive(interval=20.0, slots=4)  # a round: 4 ticks of 5 s
        first, second = Member(), Member()
        joined = {first: keepalive.add(first)}
        keepalive.stop()  # the wheel is turned by hand below
        beaten: dict[Member, list[int]] = {first: [], second: []}
        for tick in range(1, 11):
            if tick == 2:
                joined[second] = keepalive.add(second)
                keepalive.stop()
            for member in keepalive.tick():
                beaten[member].append(tick)
        assert beaten == {first: [4, 8], second: [5, 9]}  # joined before tick 1 and before tick 2
        for member, slot in joined.items():
            keepalive.discard(member, slot)
        assert keepalive.count == 0 and not any(keepalive.tick() for _ in range(4))

    asyncio.run(scenario())


def test_the_keepalive_timer_runs_only_while_there_are_sockets() -> None:
    async def scenario() -> None:
        keepalive = Keepalive(interval=0.2, slots=4)
        members = [Member() for _ in range(3)]
        slots = [keepalive.add(member) for member in members]
        assert keepalive.timer is not None
        await until(lambda: all(member.beats >= 2 for member in members))  # two rounds
        for member, slot in zip(members, slots, strict=True):
            keepalive.discard(member, slot)
        assert keepalive.timer is None

    asyncio.run(scenario())


def test_deadlines_expire_in_order_on_one_timer_and_cancelled_ones_let_go_at_once() -> None:
    async def scenario() -> None:
        deadlines, expired = Deadlines(), []
        late, early, cancelled = Member(expired), Member(expired), Member(expired)
        deadlines.add(0.15, late)
        deadlines.add(0.05, early)
        entry = deadlines.add(0.10, cancelled)
        deadlines.cancel(entry)
        assert entry[2] is None  # nothing keeps the cancelled member (and its socket) alive
        await until(lambda: len(expired) == 2)
        assert expired == [early, late]
        assert (early.expired, late.expired, cancelled.expired) == (1, 1, 0)
        assert deadlines.timer is None and deadlines.live == 0

    asyncio.run(scenario())


def test_cancelled_deadlines_do_not_pile_up_when_connections_come_and_go() -> None:
    async def scenario() -> None:
        deadlines = Deadlines()
        kept = [deadlines.add(3600, Member()) for _ in range(10)]
        for _ in range(1000):  # short connections of long sessions
            deadlines.cancel(deadlines.add(3600, Member()))
        assert deadlines.live == 10 and len(deadlines.heap) <= 2 * 64
        for entry in kept:
            deadlines.cancel(entry)
        assert deadlines.timer is None and not deadlines.heap

    asyncio.run(scenario())


def test_a_session_gone_leaves_nothing_in_what_the_process_keeps_for_all_sockets(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        _, token = await account(context)
        async with session(context) as opened:
            await opened.authenticate(token)
            await opened.receive(json.dumps({"type": "ping"}))
            assert opened.id in context.hub.frames.buckets and context.hub.expiries.live == 1
        assert opened.id not in context.hub.frames.buckets and context.hub.expiries.live == 0

    run(scenario)


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def frames(self) -> list[tuple[int, bytes]]:
        """What the server wrote: (opcode, payload) of each (unmasked) frame; then forgotten."""
        out, data = [], bytes(self.written)
        while data:
            opcode, size, start = data[0] & 0x0F, data[1] & 0x7F, 2
            if size == 126:
                size, start = struct.unpack_from("!H", data, 2)[0], 4
            out.append((opcode, data[start : start + size]))
            data = data[start + size :]
        self.written.clear()
        return out


def websocket() -> tuple[WebsocketImplProtocol, Transport]:
    """A Sanic websocket after its handshake, as Sanic builds it, on a transport that keeps what it is given."""
    loop = asyncio.get_running_loop()
    ws = WebsocketImplProtocol(ServerProtocol(state=State.OPEN), ping_interval=None)
    transport = Transport()
    can_write = asyncio.Event()
    can_write.set()
    ws.io_proto = SimpleNamespace(transport=transport, loop=loop, _can_write=can_write)  # type: ignore[assignment]
    ws.loop = loop
    return ws, transport


def frame(opcode: Opcode, data: bytes, fin: bool = True) -> Frame:
    return Frame(opcode, data, fin)


def test_messages_come_whole_and_in_order_and_the_socket_is_not_read_while_they_wait() -> None:
    async def scenario() -> None:
        ws, transport = websocket()
        inbox = Inbox.install(ws)
        assert ws.assembler is inbox and Inbox.install(ws) is inbox
        waiting = inbox.arrival()
        await ws.process_events([frame(Opcode.TEXT, b'{"type":"ping"}')])
        assert waiting.done() and transport.reading  # the connection was waiting: it takes it
        await ws.process_events([
            frame(Opcode.TEXT, "{\"a\":\"é".encode()[:-1], fin=False),  # split inside a character
            frame(Opcode.CONT, "{\"a\":\"é".encode()[-1:] + b'"}'),
            frame(Opcode.PING, b"p"),
            frame(Opcode.BINARY, b"\x00\x01"),
        ])  # fmt: skip
        assert not transport.reading  # the connection is busy: the rest waits in the socket
        assert [inbox.take(), inbox.take(), inbox.take(), inbox.take()] == [
            '{"type":"ping"}', '{"a":"é"}', b"\x00\x01", None,
        ]  # fmt: skip
        inbox.arrival()
        assert transport.reading  # all taken: reading again

    asyncio.run(scenario())


def test_a_text_message_that_is_not_utf8_fails_the_connection_with_1007() -> None:
    async def scenario() -> None:
        ws, transport = websocket()
        inbox = Inbox.install(ws)
        await ws.process_events([frame(Opcode.TEXT, b"\xff")])
        assert inbox.take() is None
        assert transport.frames() == [(Opcode.CLOSE, struct.pack("!H", 1007) + b"a text frame that is not UTF-8")]

    asyncio.run(scenario())


def test_a_message_in_too_many_fragments_fails_the_connection_with_1009() -> None:
    async def scenario() -> None:
        ws, transport = websocket()
        inbox = Inbox.install(ws)
        whole = [frame(Opcode.TEXT, b"[", fin=False), *[frame(Opcode.CONT, b"", fin=False)] * 1022]
        await ws.process_events([*whole, frame(Opcode.CONT, b"]")])
        assert inbox.take() == "[]"  # 1,024 fragments: a message
        endless = [frame(Opcode.TEXT, b"[", fin=False), *[frame(Opcode.CONT, b"", fin=False)] * 5000]
        await ws.process_events(endless)
        assert inbox.take() is None and inbox.chunks is None
        reason = b"a message in more than 1024 fragments"
        assert transport.frames() == [(Opcode.CLOSE, struct.pack("!H", 1009) + reason)]

    asyncio.run(scenario())


def test_the_inbox_refuses_a_socket_whose_frames_went_to_sanic_first() -> None:
    async def scenario() -> None:
        ws, _ = websocket()
        ws.assembler.chunks.append("a frame read before the inbox was there")
        with pytest.raises(RuntimeError, match="before the connection's inbox was installed"):
            Inbox.install(ws)

    asyncio.run(scenario())


def test_a_close_frame_wakes_a_connection_waiting_for_a_message_as_sanic_recv_did() -> None:
    async def scenario() -> None:
        ws, _ = websocket()
        waiting = Inbox.install(ws).arrival()
        await ws.process_events([Frame(Opcode.CLOSE, struct.pack("!H", 1000))])
        assert waiting.cancelled()

    asyncio.run(scenario())


def test_an_adopted_socket_is_closed_by_sanic_as_before() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ws, transport = websocket()
        ws.close_timeout = 5
        await ws.connection_made(ws.io_proto, loop)  # type: ignore[arg-type]  # Sanic starts its auto-closer
        shielded = ws.data_finished_fut
        assert adopt(ws) is ws.assembler and ws.data_finished_fut is not shielded and shielded.cancelled()
        await asyncio.sleep(0)  # the auto-closer waits for the data transfer to finish
        ws.eof_received()  # the client is gone: Sanic finishes the transfer on the plain future
        await until(lambda: transport.closed)
        assert transport.closed and not ws.auto_closer_task.done()  # closed; waiting to hear it is lost
        ws.connection_lost(None)
        await asyncio.wait_for(ws.auto_closer_task, 1)

    asyncio.run(scenario())


def test_a_peer_that_does_not_answer_a_ping_before_the_next_is_cut_off_with_1011() -> None:
    async def scenario() -> None:
        ws, transport = websocket()
        wire = Wire(ws)
        assert wire.ping() and transport.frames() == [(Opcode.PING, PING)]
        await ws.process_events([Frame(Opcode.PONG, PING)])  # answered
        assert wire.ping() and transport.frames() == [(Opcode.PING, PING)]
        assert not wire.ping()  # not answered
        assert transport.frames() == [(Opcode.CLOSE, struct.pack("!H", 1011))] and transport.closed
        assert ws.ws_proto.state is State.CLOSING

    asyncio.run(scenario())


class RawClient:
    """A websocket client that does not answer pings: a peer that has gone away, seen from the server."""

    def __init__(self, server: Server, account: Account) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {account.token}\r\n\r\n"
            .encode()
        )  # fmt: skip
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def next_frame(self, timeout: float) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 2:  # the server's frames here are under 64 KiB
                size, start = self.buffer[1] & 0x7F, 2
                if size == 126 and len(self.buffer) >= 4:
                    size, start = struct.unpack_from("!H", self.buffer, 2)[0], 4
                if size != 126 and len(self.buffer) >= start + size:
                    opcode, payload = self.buffer[0] & 0x0F, self.buffer[start : start + size]
                    self.buffer = self.buffer[start + size :]
                    return opcode, payload
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            assert data, "closed without a close frame"
            self.buffer += data

    def close(self) -> None:
        self.sock.close()


def test_the_server_pings_every_socket_and_cuts_off_one_that_stopped_answering(server, signup) -> None:
    ann = signup("Ann")
    silent = RawClient(server, ann)
    try:
        with Feed(server, ann) as answering:  # the client library answers pings
            assert silent.next_frame(10)[0] == Opcode.TEXT  # ready
            started = time.monotonic()
            opcode, payload = silent.next_frame(PING_INTERVAL + 5)
            assert opcode == Opcode.PING and time.monotonic() - started <= PING_INTERVAL + 5
            opcode, payload = silent.next_frame(PING_INTERVAL + 5)  # no pong: the next beat cuts it off
            assert opcode == Opcode.CLOSE and struct.unpack("!H", payload[:2])[0] == 1011
            answering.send(type="ping")
            assert answering.expect("pong") == {"type": "pong"}  # still open: it answered its pings
    finally:
        silent.close()
