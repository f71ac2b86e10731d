"""Live co-editing: 20 editors typing 5 characters a second each into one document (pycrdt clients).

Latency is from a keystroke's `doc.update` leaving its editor to the update's event reaching each
other editor (all clients in this one process, one clock). The server runs with a short compaction
window (COEDIT_KEEP=3, COEDIT_COMPACT_AFTER=300), so the keeper compacts the typed document several
times *during* the typing: its cost is in the latency, and its own time is read from /metrics. Then: a
new editor's sync of the compacted document (snapshot + log), and the server's memory per document held
live (RSS before and after 200 documents are opened).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import time
from typing import Any

import httpx
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect

EDITORS, RATE, SECONDS = 20, 5.0, 20.0
# The server's settings for this stage: compaction every few seconds of typing, not every ten minutes.
SETTINGS = {"COEDIT_KEEP": "3", "COEDIT_COMPACT_AFTER": "300"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Editor:
    """One typist: a pycrdt replica of the document, on its own socket."""

    def __init__(self, ws: ClientConnection, document: str) -> None:
        self.ws, self.document = ws, document
        self.doc: Doc[Text] = Doc()
        self.text = self.doc.get("body", type=Text)
        self.typed = 0
        self.received: set[str] = set()  # the keystrokes (of anyone) whose event reached this editor

    async def type(self, sent: dict[str, float], stop: float) -> None:
        next_at = time.monotonic()
        while time.monotonic() < stop:
            before = self.doc.get_state()
            self.text.insert(len(self.text), "x")
            update = _b64(self.doc.get_update(before))
            sent[update] = time.perf_counter()
            self.typed += 1
            frame = {"type": "doc.update", "id": str(self.typed), "document": self.document, "update": update}
            await self.ws.send(json.dumps(frame))
            next_at += 1 / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def read(self, sent: dict[str, float], seen: list[float]) -> None:
        async for raw in self.ws:
            frame: dict[str, Any] = json.loads(raw)
            if frame.get("type") == "error":
                raise RuntimeError(f"an editor was refused: {frame}")
            if frame.get("type") != "event":
                continue
            update = frame["data"]["update"]
            self.doc.apply_update(base64.b64decode(update))
            if frame["op"] == "update" and update in sent and update not in self.received:
                self.received.add(update)
                seen.append(time.perf_counter() - sent[update])


async def _typing(url: str, tokens: list[str], document: str) -> dict[str, Any]:
    ws_url = url.replace("http", "ws", 1) + "/ws"
    sent: dict[str, float] = {}
    seen: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        editors = []
        for token in tokens:
            ws = await stack.enter_async_context(
                connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
            )
            await ws.recv()  # ready
            await _subscribe(ws, document)
            editors.append(Editor(ws, document))
        readers = [asyncio.create_task(editor.read(sent, seen)) for editor in editors]
        stop = time.monotonic() + SECONDS
        await asyncio.gather(*(editor.type(sent, stop) for editor in editors))
        # Every keystroke to every editor's screen, the author's own included (its echo is how it
        # knows the server has it in order): wait for them all, 10 s at most.
        deadline = time.monotonic() + 10
        while any(len(e.received) < len(sent) for e in editors) and time.monotonic() < deadline:
            if done := [reader for reader in readers if reader.done()]:
                done[0].result()  # a refusal or a dropped socket: say so
            await asyncio.sleep(0.05)
        for reader in readers:
            reader.cancel()
        texts = {str(editor.text) for editor in editors}
    ordered = sorted(seen)
    return {
        "editors": len(tokens),
        "keystrokes": len(sent),
        "deliveries": len(seen),
        "lost": len(sent) * len(editors) - len(seen),
        "converged": len(texts) == 1,
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
    }


def run(url: str, register: Any, verify: Any, rss: Any) -> dict[str, Any]:
    """The stage: `register(email)` gives a token, `verify(emails)` marks those addresses proven (only
    a verified account can be shared with directly), `rss()` the server's resident memory in bytes."""
    emails = [f"editor{i}@example.com" for i in range(EDITORS)]
    tokens = [register(email) for email in emails]
    verify(emails)
    owner = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30)
    document = owner.post("/documents", json={"title": "Typed by twenty", "body": ""}).json()["id"]
    for email in emails[1:]:
        shared = owner.post(f"/documents/{document}/collaborators", json={"email": email, "role": "editor"})
        if shared.status_code != 200:
            raise RuntimeError(f"sharing the document with {email} answered {shared.status_code}: {shared.text}")
    results = asyncio.run(_typing(url, tokens, document))
    results["text_length"] = len(owner.get(f"/documents/{document}").json()["body"])
    results["compaction"] = _compactions(owner.get("/metrics").text)
    results["sync_ms"] = asyncio.run(_sync(url, tokens[1], document))
    documents = [owner.post("/documents", json={"title": f"d{i}", "body": "y" * 2000}).json()["id"] for i in range(200)]
    results["memory_per_document"] = asyncio.run(_memory(url, tokens[0], documents, rss))
    return results


def _compactions(metrics: str) -> dict[str, float]:
    """Compactions the keeper ran, the updates they folded and their mean time (Prometheus text)."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name in ("murmuration_coedit_compaction_seconds_count", "murmuration_coedit_compaction_seconds_sum",
                    "murmuration_coedit_updates_compacted_total"):  # fmt: skip
            values[name] = float(value)
    reruns = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("murmuration_coedit_write_reruns_total{"))  # fmt: skip
    count = values.get("murmuration_coedit_compaction_seconds_count", 0.0)
    total = values.get("murmuration_coedit_compaction_seconds_sum", 0.0)
    return {
        "count": count,
        "folded": values.get("murmuration_coedit_updates_compacted_total", 0.0),
        "mean_ms": round(total / count * 1000, 1) if count else 0.0,
        "reruns": reruns,  # keystroke writes run again after a conflict with a compaction or a save point
    }


async def _sync(url: str, token: str, document: str) -> float:
    """Milliseconds from a new editor's subscribe to its `sync` event (the snapshot and the log since)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url.replace("http", "ws", 1) + "/ws", additional_headers=headers, max_size=None) as ws:
        await ws.recv()
        started = time.perf_counter()
        await _subscribe(ws, document)
        return round((time.perf_counter() - started) * 1000, 1)


async def _subscribe(ws: ClientConnection, document: str, sub: str = "d") -> None:
    """Subscribe to the document's `doc` stream and wait for its sync (a refusal stops the bench)."""
    await ws.send(json.dumps({"type": "subscribe", "id": sub, "stream": "doc", "params": {"id": document}}))
    while (frame := json.loads(await ws.recv())).get("op") != "sync":
        if frame.get("type") == "error":
            raise RuntimeError(f"the subscription to the document was refused: {frame}")


async def _memory(url: str, token: str, documents: list[str], rss: Any) -> int:
    """Bytes of server memory per document held live (a 2 KB text each): 200 documents opened on 4
    connections (at most 100 subscriptions each), 20 subscribes a second (the frame rate allows 50)."""
    before = rss()
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(connect(url.replace("http", "ws", 1) + "/ws",
                                                           additional_headers=headers)) for _ in range(4)]  # fmt: skip
        for ws in sockets:
            await ws.recv()
        for index, document in enumerate(documents):
            await _subscribe(sockets[index % 4], document, f"s{index}")
            await asyncio.sleep(0.05)
        after = rss()
    return max(0, (after - before) // len(documents))
