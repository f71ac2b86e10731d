"""Fan-out load generator (its own process, on uvloop): N authenticated websocket clients subscribed to
one document, writes at a fixed rate, commit-to-receipt latency per delivered event.

Prints one JSON object. Latency is measured from the write's server timestamp (`updated_at`, set just
before the commit) to the client's receipt, both on this machine's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvloop
import websockets


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> dict[str, object]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    headers = {"Authorization": f"Bearer {args.token}"}
    latencies: list[float] = []
    expected = args.clients * args.writes
    done = asyncio.Event()
    gate = asyncio.Semaphore(200)
    sockets = []
    rss_before = rss_kb(args.pid)

    async def open_one() -> None:
        async with gate:
            ws = await websockets.connect(args.ws, additional_headers=headers, ping_interval=None,
                                          compression=None, max_queue=None, open_timeout=120)  # fmt: skip
            await ws.recv()  # ready
            await ws.send(json.dumps({"type": "subscribe", "id": "d", "stream": "documents",
                                      "params": {"id": args.document}}))  # fmt: skip
            await ws.recv()  # subscribed
            sockets.append(ws)

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.clients)))
    connect_s = time.monotonic() - started
    await asyncio.sleep(2)  # let the server settle before measuring idle memory
    rss_idle = rss_kb(args.pid)

    async def read(ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            received = datetime.now(UTC)
            event = json.loads(raw)
            if event.get("type") == "event":
                stamp = datetime.fromisoformat(event["data"]["updated_at"].replace("Z", "+00:00"))
                latencies.append((received - stamp).total_seconds() * 1000)
                if len(latencies) >= expected:
                    done.set()

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
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
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    ordered = sorted(latencies) or [float("nan")]
    return {
        "clients": args.clients,
        "writes": args.writes,
        "received": len(latencies),
        "expected": expected,
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
        "events_per_s": len(latencies) / elapsed if elapsed else 0,
        "connect_s": connect_s,
        "server_cpu_percent": 100 * cpu / elapsed if elapsed else 0,
        "server_rss_mb": rss_idle / 1024,
        "rss_per_idle_kb": (rss_idle - rss_before) / args.clients,
    }


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
    uvloop.install()
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
