"""Fan-out load generator (its own process, on uvloop): N websocket clients subscribed to one document,
writes at a fixed rate, commit-to-receipt latency per delivered event.

Prints one JSON object. Latency is measured from the write's server timestamp (`updated_at`, set just
before the commit) to the client's receipt, both on this machine's clock.

Writes always go through Murmuration's REST API (`PATCH {--url}/documents/{id}` with `--token`), whatever
`--protocol` the clients speak: the peers follow the change stream of the same database, so every
system fans out the same commits. `--ws` is where the clients connect:

  murmuration  Murmuration's /ws: `Authorization: Bearer` (--token, or line i of --tokens for client i),
               subscribe to the document, events `{"type":"event",...,"data":{document}}`.
  channels     bench/peers/channels_peer (daphne): `{"type": "join", "document": id}`, answered by
               `{"type": "joined"}`, then `{"type": "change", "document": {document}}`.
  socketio     bench/peers/socketio over Engine.IO v4 (`ws://host:port/socket.io/?EIO=4&transport=websocket`):
               `0{open}` -> `40` -> `40{sid}` -> `421["join",id]` -> ack `431[...]`, then `42["change",{document}]`;
               the server's pings `2` are answered `3`.

`--pid` (repeatable, or comma-separated) names the server's processes: their CPU seconds during the
writes and their resident memory are summed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import resource
import struct
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import spy  # bench/, next to this script
import uvloop


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Dialect:
    """What differs between servers: the handshake, how to subscribe, and what their frames look like."""

    event = b'{"type":"event"'  # how an event frame starts; anything else goes to answer()

    def __init__(self, document: str) -> None:
        self.document = document

    def headers(self, token: str | None) -> str:
        return ""

    def opening(self) -> bytes | None:
        """What to send once the connection is upgraded."""
        return None

    def answer(self, payload: bytes) -> tuple[bytes | None, bool]:
        """For a frame that is not an event: what to send back, and whether the client is now subscribed."""
        return None, False

    def document_of(self, event: bytes) -> dict[str, object]:
        raise NotImplementedError


class Murmuration(Dialect):
    def headers(self, token: str | None) -> str:
        return f"Authorization: Bearer {token}\r\n" if token else ""

    fields: list[str] | None = None  # --fields: what a reader that does not show the roster asks for

    def opening(self) -> bytes:
        params: dict[str, object] = {"id": self.document}
        if self.fields:
            params["fields"] = self.fields
        return json.dumps({"type": "subscribe", "id": "d", "stream": "documents", "params": params}).encode()

    def answer(self, payload: bytes) -> tuple[bytes | None, bool]:
        return None, b'"subscribed"' in payload

    def document_of(self, event: bytes) -> dict[str, object]:
        return json.loads(event)["data"]  # type: ignore[no-any-return]


class Channels(Dialect):
    event = b'{"type": "change"'  # Channels' send_json is json.dumps with its default separators

    def opening(self) -> bytes:
        return json.dumps({"type": "join", "document": self.document}).encode()

    def answer(self, payload: bytes) -> tuple[bytes | None, bool]:
        return None, payload.startswith(b'{"type": "joined"')

    def document_of(self, event: bytes) -> dict[str, object]:
        return json.loads(event)["document"]  # type: ignore[no-any-return]


class SocketIO(Dialect):
    """Engine.IO v4 packets (open 0, ping 2, pong 3, message 4) carrying Socket.IO v5 ones (connect 0,
    event 2, ack 3): `42[...]` is an event, `431[...]` the answer to our event with ack id 1."""

    event = b'42["change",'

    def answer(self, payload: bytes) -> tuple[bytes | None, bool]:
        if payload == b"2":
            return b"3", False
        if payload.startswith(b"0{"):  # Engine.IO is open: connect to the main namespace
            return b"40", False
        if payload.startswith(b"40"):  # connected: join the document's room, asking for an ack
            return b'421["join",' + json.dumps(self.document).encode() + b"]", False
        return None, payload.startswith(b"431")

    def document_of(self, event: bytes) -> dict[str, object]:
        return json.loads(event[2:])[1]  # type: ignore[no-any-return]


DIALECTS: dict[str, type[Dialect]] = {"murmuration": Murmuration, "channels": Channels, "socketio": SocketIO}


class Client(asyncio.Protocol):
    """A minimal websocket client: handshake, subscribe (as its dialect says), a receipt time per event frame.

    A full client library spends tens of microseconds in Python per frame; with 5,000 of them in one
    process that queueing, not the server, would be what the latencies measure. This one only splits
    frames and notes the time; the JSON is parsed after the run.
    """

    def __init__(
        self, request: bytes, dialect: Dialect, receipts: list[tuple[float, bytes]], counted: Callable[[], None]
    ) -> None:
        self.request = request
        self.dialect = dialect
        self.event = dialect.event
        self.receipts = receipts
        self.counted = counted
        self.buffer = bytearray()
        self.upgraded = False
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(bytes(self.buffer[:200]).decode(errors="replace"))
            del self.buffer[: end + 4]
            self.upgraded = True
            opening = self.dialect.opening()
            if opening is not None:
                self.transport.write(masked(0x81, opening))  # type: ignore[union-attr]
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, size, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if opcode == 0x9:  # ping: answer, or the server drops us
                self.transport.write(masked(0x8A, payload))  # type: ignore[union-attr]
            elif payload.startswith(self.event):
                self.receipts.append((now, payload))
                self.counted()
            elif opcode == 0x1:
                self.reply(payload)

    def reply(self, payload: bytes) -> None:
        answer, subscribed = self.dialect.answer(payload)
        if answer is not None:
            self.transport.write(masked(0x81, answer))  # type: ignore[union-attr]
        if subscribed and not self.subscribed.done():
            self.subscribed.set_result(None)


def masked(first: int, payload: bytes) -> bytes:
    """A client frame; the all-zero mask leaves the payload as it is (the server only needs a mask)."""
    size = len(payload)
    header = struct.pack("!BB", first, 0x80 | size) if size < 126 else struct.pack("!BBH", first, 0x80 | 126, size)
    return header + b"\0\0\0\0" + payload


def requests(ws_url: str, dialect: Dialect, tokens: Sequence[str | None]) -> list[bytes]:
    """The upgrade request, one per token (client i sends the i-th, modulo their number)."""
    ws = urlsplit(ws_url)
    target = f"{ws.path}?{ws.query}" if ws.query else ws.path
    key = base64.b64encode(os.urandom(16)).decode()
    return [
        (f"GET {target} HTTP/1.1\r\nHost: {ws.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{dialect.headers(token)}\r\n").encode()
        for token in tokens
    ]  # fmt: skip


def server_pids(values: list[str]) -> list[int]:
    return [int(pid) for value in values for pid in value.split(",") if pid.strip()]


def total_rss_kb(pids: list[int]) -> int:
    return sum(rss_kb(pid) for pid in pids)


def total_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def main(args: argparse.Namespace, tokens: list[str]) -> dict[str, object]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pids = server_pids(args.pid)
    dialect = DIALECTS[args.protocol](args.document)
    dialect.fields = args.fields.split(",") if args.fields else None
    upgrades = requests(args.ws, dialect, tokens)
    ws = urlsplit(args.ws)
    receipts: list[tuple[float, bytes]] = []
    expected = args.clients * args.writes
    done = asyncio.Event()
    if expected == 0:  # --writes 0: only the idle sockets' memory is measured
        done.set()

    def counted() -> None:
        if len(receipts) >= expected:
            done.set()

    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    clients: list[Client] = []
    rss_before = total_rss_kb(pids)

    retried = 0

    async def open_one(index: int) -> None:
        nonlocal retried
        async with gate:
            for attempt in range(3):  # a refused or dropped connect is retried, and counted
                client = Client(upgrades[index % len(upgrades)], dialect, receipts, counted)
                try:
                    await loop.create_connection(lambda c=client: c, ws.hostname, ws.port)  # type: ignore[misc]
                    await asyncio.wait_for(client.subscribed, 120)
                    clients.append(client)
                    return
                except OSError:
                    retried += 1
                    if attempt == 2:
                        raise

    started = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(args.clients)))
    connect_s = time.monotonic() - started
    await asyncio.sleep(2)  # let the server settle before measuring idle memory
    # This process's own full collections over 10,000 clients would stop its receipts for a second and
    # be counted against whichever system is measured: its heap is frozen once every client is in.
    gc.collect()
    gc.freeze()
    rss_idle = total_rss_kb(pids)

    recording = spy.record(pids[0], args.profile) if args.profile else None
    cpu_start = total_cpu_seconds(pids)
    first_write = time.monotonic()
    async with httpx.AsyncClient(base_url=args.url, headers={"Authorization": f"Bearer {args.token}"},
                                 timeout=30) as http:  # fmt: skip
        for i in range(args.writes):
            await http.patch(f"/documents/{args.document}", json={"body": f"write {i}"})
            await asyncio.sleep(1 / args.rate)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    elapsed = time.monotonic() - first_write
    cpu = total_cpu_seconds(pids) - cpu_start
    if recording is not None:
        spy.stop(recording)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    latencies = sorted((received - stamp(dialect, payload)) * 1000 for received, payload in receipts) or [float("nan")]
    return {
        "protocol": args.protocol,
        "clients": args.clients,
        "writes": args.writes,
        "received": len(receipts),
        "expected": expected,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": latencies[-1],
        "events_per_s": len(receipts) / elapsed if elapsed else 0,
        "connect_s": connect_s,
        "connects_retried": retried,
        "server_cpu_percent": 100 * cpu / elapsed if elapsed else 0,
        "server_cpu_s": cpu,
        "cpu_s_per_1000_frames": cpu / len(receipts) * 1000 if receipts else float("nan"),
        "server_rss_mb": rss_idle / 1024,
        "rss_per_idle_kb": (rss_idle - rss_before) / args.clients,
        "distinct_tokens": len(set(tokens[: args.clients])) if args.protocol == "murmuration" else 0,
    }


def stamp(dialect: Dialect, payload: bytes) -> float:
    """The write's commit time: the document's `updated_at`, set by the server just before the commit.

    ISO 8601 (`2026-11-21T01:19:02.123Z`) or epoch milliseconds.
    """
    updated_at = dialect.document_of(payload)["updated_at"]
    if isinstance(updated_at, int | float):
        return updated_at / 1000
    assert isinstance(updated_at, str)
    return datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--protocol", choices=sorted(DIALECTS), default="murmuration", help="what --ws speaks")
    parser.add_argument("--url", required=True, help="Murmuration's base URL: the writes go there")
    parser.add_argument("--ws", required=True, help="where the clients connect (see the protocols above)")
    parser.add_argument("--token", required=True, help="Murmuration bearer token for the writes (and the clients)")
    parser.add_argument("--tokens", help="a file of bearer tokens, one a line: client i uses line i (modulo)")
    parser.add_argument("--document", required=True)
    parser.add_argument("--pid", action="append", required=True,
                        help="a server process to measure; repeat it or separate pids with commas")  # fmt: skip
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--fields", help="murmuration: subscribe with params.fields (comma-separated)")
    parser.add_argument("--profile", help="write a py-spy profile (raw) of the first --pid during the writes here")
    arguments = parser.parse_args()
    if arguments.tokens and arguments.protocol != "murmuration":
        parser.error("--tokens is for --protocol murmuration (the peers have no auth)")
    tokens = Path(arguments.tokens).read_text().split() if arguments.tokens else [arguments.token]
    uvloop.install()
    print(json.dumps(asyncio.run(main(arguments, tokens))), flush=True)
