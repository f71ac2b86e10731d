"""Frames out to one socket, in order, bounded.

While the socket keeps up, a frame goes straight to it (see wire.py). When its buffer is full,
frames wait in a bounded queue drained by one writer task, started the first time one has to wait.
A client that does not keep up fills the queue: `push` says so, and the session disconnects it
(4008; it can come back with `since`), so it never makes the server buffer without bound or slows
anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib

from .wire import Wire


class Outbox:
    def __init__(self, wire: Wire, size: int) -> None:
        self.wire = wire
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.holding = False  # the writer has taken a frame from the queue and not written it yet
        self.writer: asyncio.Task[None] | None = None

    def push(self, frame: str) -> bool:
        """Send or queue `frame`; False when the queue is full (the client is too slow)."""
        if self._direct():
            self.wire.write(frame)
            return True
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(), name="ws-writer")
        return True

    async def push_wait(self, frame: str) -> None:
        """Send or queue `frame`, waiting for room: for replays, which the client paces."""
        if self._direct():
            self.wire.write(frame)
        elif self.queue.full():
            await self.queue.put(frame)  # the writer is running: the queue only fills while it waits
        else:
            self.push(frame)

    def abort(self, code: int, reason: str) -> None:
        self.wire.abort(code, reason)

    def _direct(self) -> bool:
        """Whether a frame can go to the socket now without overtaking frames that wait."""
        return not self.holding and self.queue.empty() and self.wire.ready()

    async def _write(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await self.queue.get()
                self.holding = True
                if not await self.wire.drained():
                    return
                self.wire.write(frame)
                self.holding = False

    async def close(self) -> None:
        """Stop the writer; what still waits is dropped (the socket is gone)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
