"""Frames out to one socket, in order, bounded.

While the socket keeps up, a frame goes straight to it (see wire.py). When its buffer is full,
frames wait in a queue bounded in frames (`WS_SEND_QUEUE`) and in bytes (`WS_SEND_BYTES`), drained by
one writer task, started the first time one has to wait. A client that does not keep up fills the
queue: `push` says so, and the session disconnects it (4008; it can come back with `since`), so it
never makes the server buffer without bound or slows anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from .wire import Wire


class Outbox:
    """At most `frames` frames and `size` bytes wait (plus one frame of any size when none does)."""

    # The queue, its events and the writer are made the first time a frame has to wait: most sockets
    # never fall behind, and the three cost about 2.5 KB a socket (a deque is 0.7 KB, even empty).
    __slots__ = ("bytes", "max_bytes", "max_frames", "pending", "room", "waiting", "wire", "writer")

    def __init__(self, wire: Wire, frames: int, size: int) -> None:
        self.wire = wire
        self.max_frames = frames
        self.max_bytes = size
        self.pending: deque[tuple[str, int]] | None = None  # (frame, its UTF-8 size), oldest first
        self.bytes = 0
        self.waiting: asyncio.Event | None = None  # something is pending: wakes the writer
        self.room: asyncio.Event | None = None  # there is room again: wakes a replay waiting in push_wait
        self.writer: asyncio.Task[None] | None = None

    def push(self, frame: str) -> bool:
        """Send or queue `frame`; False when there is no room (the client is too slow)."""
        if self._direct():
            self.wire.write(frame)
            return True
        size = _size(frame)
        if not self._fits(size):
            return False
        self._queue(frame, size)
        return True

    async def push_wait(self, frame: str) -> None:
        """Send or queue `frame`, waiting for room: for replays, which the client paces."""
        if self._direct():
            self.wire.write(frame)
            return
        size = _size(frame)
        while not self._fits(size):  # the writer is running: the queue only fills while it waits
            if self.room is None:
                self.room = asyncio.Event()
            self.room.clear()
            await self.room.wait()
        self._queue(frame, size)

    def abort(self, code: int, reason: str) -> None:
        self.wire.abort(code, reason)

    def _direct(self) -> bool:
        """Whether a frame can go to the socket now without overtaking frames that wait."""
        return not self.pending and self.wire.ready()

    def _fits(self, size: int) -> bool:
        if not self.pending:
            return True
        return len(self.pending) < self.max_frames and self.bytes + size <= self.max_bytes

    def _queue(self, frame: str, size: int) -> None:
        if self.pending is None or self.waiting is None:  # the first time one waits (kept from then on)
            self.pending = deque()
            self.waiting = asyncio.Event()
        self.pending.append((frame, size))
        self.bytes += size
        self.waiting.set()
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(self.pending, self.waiting), name="ws-writer")

    async def _write(self, pending: deque[tuple[str, int]], waiting: asyncio.Event) -> None:
        with contextlib.suppress(Exception):
            while True:
                while not pending:
                    waiting.clear()
                    await waiting.wait()
                if not await self.wire.drained():
                    return
                frame, size = pending.popleft()  # written only now: nothing overtakes it
                self.bytes -= size
                self.wire.write(frame)
                if self.room is not None:
                    self.room.set()

    async def close(self) -> None:
        """Stop the writer; what still waits is dropped (the socket is gone)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self.pending is not None:
            self.pending.clear()
        self.bytes = 0


def _size(frame: str) -> int:
    return len(frame) if frame.isascii() else len(frame.encode())
