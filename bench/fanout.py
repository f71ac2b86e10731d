"""Fan-out load generator (its own process, on uvloop): N authenticated websocket clients subscribed to
one document, writes at a fixed rate, commit-to-receipt latency per delivered event.

Prints one JSON object. Latency is measured from the write's server timestamp (`updated_at`, set just
before the commit) to the client's receipt, both on this machine's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import struct
import time
from collections.abc import Callable
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


class Client(asyncio.Protocol):
    """A minimal websocket client: handshake, one subscribe, and a receipt time per event frame.

    A full client library spends tens of microseconds in Python per frame; with 5,000 of them in one
    process that queueing, not the server, would be what the latencies measure. This one only splits
    frames and notes the time; the JSON is parsed after the run.
    """

    def __init__(
        self, request: bytes, subscribe: bytes, receipts: list[tuple[float, bytes]], counted: Callable[[], None]
    ) -> None:
        self.request = request
        self.subscribe = subscribe
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
            self.transport.write(self.subscribe)  # type: ignore[union-attr]
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
            elif payload.startswith(b'{"type":"event"'):
                self.receipts.append((now, payload))
                self.counted()
            elif b'"subscribed"' in payload and not self.subscribed.done():
                self.subscribed.set_result(None)


def masked(first: int, payload: bytes) -> bytes:
    """A client frame; the all-zero mask leaves the payload as it is (the server only needs a mask)."""
    size = len(payload)
    header = struct.pack("!BB", first, 0x80 | size) if size < 126 else struct.pack("!BBH", first, 0x80 | 126, size)
    return header + b"\0\0\0\0" + payload


async def main(args: argparse.Namespace) -> dict[str, object]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    headers = {"Authorization": f"Bearer {args.token}"}
    ws = urlsplit(args.ws)
    request = (
        f"GET {ws.path} HTTP/1.1\r\nHost: {ws.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {args.token}\r\n\r\n"
    ).encode()
    subscribe = masked(0x81, json.dumps({"type": "subscribe", "id": "d", "stream": "documents",
                                         "params": {"id": args.document}}).encode())  # fmt: skip
    receipts: list[tuple[float, bytes]] = []
    expected = args.clients * args.writes
    done = asyncio.Event()

    def counted() -> None:
        if len(receipts) >= expected:
            done.set()

    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    clients: list[Client] = []
    rss_before = rss_kb(args.pid)

    retried = 0

    async def open_one() -> None:
        nonlocal retried
        async with gate:
            for attempt in range(3):  # a refused or dropped connect is retried, and counted
                client = Client(request, subscribe, receipts, counted)
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
    await asyncio.gather(*(open_one() for _ in range(args.clients)))
    connect_s = time.monotonic() - started
    await asyncio.sleep(2)  # let the server settle before measuring idle memory
    rss_idle = rss_kb(args.pid)

    recording = spy.record(args.pid, args.profile) if args.profile else None
    cpu_start = cpu_seconds(args.pid)
    first_write = time.monotonic()
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=30) as http:
        for i in range(args.writes):
            await http.patch(f"/documents/{args.document}", json={"body": f"write {i}"})
            await asyncio.sleep(1 / args.rate)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    elapsed = time.monotonic() - first_write
    cpu = cpu_seconds(args.pid) - cpu_start
    if recording is not None:
        spy.stop(recording)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    latencies = sorted((received - stamp(payload)) * 1000 for received, payload in receipts) or [float("nan")]
    return {
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
        "server_rss_mb": rss_idle / 1024,
        "rss_per_idle_kb": (rss_idle - rss_before) / args.clients,
    }


def stamp(payload: bytes) -> float:
    """The write's commit time: the document's `updated_at`, set by the server just before the commit."""
    updated_at = json.loads(payload)["data"]["updated_at"]
    return datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--document", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the service worker process to measure")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--profile", help="write a py-spy profile (raw) of the worker during the writes here")
    uvloop.install()
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
