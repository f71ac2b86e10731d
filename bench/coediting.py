"""Live co-editing: 20 editors typing 5 characters a second each into one document (pycrdt clients).

Latency is from a keystroke's `doc.update` leaving its editor to the update's event reaching each
other editor (all clients in this one process, one clock). Also the server's memory per document held
live (RSS before and after 200 documents are opened).
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from typing import Any

import httpx
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect

EDITORS, RATE, SECONDS = 20, 5.0, 20.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _editor(
    ws_url: str, token: str, document: str, sent: dict[str, float], seen: list[float], stop: float
) -> int:
    doc: Doc[Text] = Doc()
    text = doc.get("body", type=Text)
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:
        await ws.recv()  # ready
        await ws.send(json.dumps({"type": "subscribe", "id": "d", "stream": "doc", "params": {"id": document}}))
        typed = 0
        reader = asyncio.create_task(_read(ws, doc, sent, seen))
        next_at = time.monotonic()
        while time.monotonic() < stop:
            before = doc.get_state()
            text.insert(len(text), "x")
            update = _b64(doc.get_update(before))
            sent[update] = time.perf_counter()
            typed += 1
            await ws.send(json.dumps({"type": "doc.update", "id": str(typed), "document": document, "update": update}))
            next_at += 1 / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(1.0)
        reader.cancel()
        return typed


async def _read(ws: ClientConnection, doc: Doc[Text], sent: dict[str, float], seen: list[float]) -> None:
    async for raw in ws:
        frame: dict[str, Any] = json.loads(raw)
        if frame.get("type") != "event":
            continue
        data = frame["data"]
        doc.apply_update(base64.b64decode(data["update"]))
        if frame["op"] == "update" and data["update"] in sent:
            seen.append(time.perf_counter() - sent[data["update"]])


async def _typing(url: str, tokens: list[str], document: str) -> dict[str, Any]:
    ws_url = url.replace("http", "ws", 1) + "/ws"
    sent: dict[str, float] = {}
    seen: list[float] = []
    stop = time.monotonic() + SECONDS
    typed = await asyncio.gather(*(_editor(ws_url, token, document, sent, seen, stop) for token in tokens))
    # Each keystroke reaches the other editors (and its own, which is not counted as "other": the
    # author's echo is in `seen` too, so this is every editor's screen).
    ordered = sorted(seen)
    return {
        "editors": len(tokens),
        "keystrokes": sum(typed),
        "deliveries": len(seen),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
    }


def run(url: str, register: Any, rss: Any) -> dict[str, Any]:
    """The stage: `register(email)` gives a token, `rss()` the server's resident memory in bytes."""
    tokens = [register(f"editor{i}@example.com") for i in range(EDITORS)]
    owner = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30)
    document = owner.post("/documents", json={"title": "Typed by twenty", "body": ""}).json()["id"]
    for i in range(1, EDITORS):
        owner.post(f"/documents/{document}/collaborators", json={"email": f"editor{i}@example.com", "role": "editor"})
    results = asyncio.run(_typing(url, tokens, document))
    documents = [owner.post("/documents", json={"title": f"d{i}", "body": "y" * 2000}).json()["id"] for i in range(200)]
    results["memory_per_document"] = asyncio.run(_memory(url, tokens[0], documents, rss))
    return results


async def _memory(url: str, token: str, documents: list[str], rss: Any) -> int:
    """Bytes of server memory per document held live (a 2 KB text each)."""
    before = rss()
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url.replace("http", "ws", 1) + "/ws", additional_headers=headers) as ws:
        await ws.recv()
        for i in range(0, 200, 50):  # 50 subscriptions at a time (100 per connection at most)
            for number, document in enumerate(documents[i : i + 50]):
                subscribe = {"type": "subscribe", "id": f"s{number}", "stream": "doc", "params": {"id": document}}
                await ws.send(json.dumps(subscribe))
            got = 0
            while got < 50:
                if json.loads(await ws.recv()).get("op") == "sync":
                    got += 1
            for number in range(50):
                await ws.send(json.dumps({"type": "unsubscribe", "id": f"s{number}"}))
        after = rss()
    return max(0, (after - before) // 200)
