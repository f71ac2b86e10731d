"""The client: REST calls over httpx, and every websocket subscription on one socket that reconnects
by itself and resumes each subscription from its cursor.

    async with Client("http://127.0.0.1:8000", token) as client:
        async for event in client.subscribe("documents"):
            print(event.op, event.id, event.data)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .errors import ApiError, CursorExpired, MurmurationError, Refused, SessionEnded
from .subscriptions import Event, Subscriptions

log = logging.getLogger("murmuration_client")
Item = Event | MurmurationError | None  # what a stream's queue holds: an event, what ended it, or its end

SESSION_ENDED = 4001
# Larger than any frame the service sends (an event carries a document of up to 1M characters, which
# JSON may spell as 6 bytes each), and still a bound.
MAX_FRAME = 64 * 1024 * 1024
RATE, BURST = 40.0, 80  # frames a second, and at once: under the server's default limits
STABLE = 5.0  # seconds a connection must last for the backoff to start again from its shortest


class Stream:
    """One subscription's events, in order; ends by raising what ended it (CursorExpired, Refused,
    SessionEnded), or when closed."""

    def __init__(self, client: Client, sub_id: str, queue: asyncio.Queue[Item]) -> None:
        self.client, self.id, self.queue = client, sub_id, queue

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, MurmurationError):
            raise item
        if self.queue.qsize() <= self.queue.maxsize // 2:
            self.client._resume(self.id)  # caught up: a paused subscription goes on from its cursor
        return item

    async def close(self) -> None:
        """Unsubscribe."""
        self.client._unsubscribe(self.id)


class Client:
    """A user's connection to a Murmuration service: `url` is its HTTP address, `token` a bearer token.
    With `first_frame_auth` the socket authenticates with an `auth` frame (as browsers must) instead of
    the `Authorization` header."""

    def __init__(self, url: str, token: str, *, first_frame_auth: bool = False, max_backoff: float = 30.0,
                 queue_size: int = 10_000) -> None:  # fmt: skip
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"url must be http://HOST[:PORT] or https://HOST[:PORT], not {url!r}")
        rest = rest.rstrip("/")
        self.url = f"{scheme.lower()}://{rest}"
        self.ws_url = f"{'wss' if scheme.lower() == 'https' else 'ws'}://{rest}/ws"
        self.token = token
        self.first_frame_auth = first_frame_auth
        self.max_backoff = max_backoff
        self.queue_size = queue_size  # events held per subscription; past it the subscription pauses
        self.http = httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.state = Subscriptions()
        self.queues: dict[str, asyncio.Queue[Item]] = {}
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.pongs: list[asyncio.Future[None]] = []
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None
        self.ended: MurmurationError | None = None
        self.serial = itertools.count(1)
        self.closing: set[asyncio.Task[None]] = set()

    # --- life cycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self.runner = asyncio.create_task(self._run(), name="murmuration-socket")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket and the HTTP client: every stream ends, every chat send still waiting fails."""
        if self.runner is not None:
            self.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.runner
        self._finish(None, MurmurationError("the client was closed"))
        await self.http.aclose()

    @classmethod
    async def login(cls, url: str, email: str, password: str, **options: Any) -> Client:
        """A client for the account with these credentials (POST /auth/login)."""
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            answer = _checked(await http.post("/auth/login", json={"email": email, "password": password}))
        return cls(url, answer["token"], **options)

    @classmethod
    async def register(cls, url: str, email: str, password: str, name: str, **options: Any) -> Client:
        """A client for a new account (POST /auth/register)."""
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            body = {"email": email, "password": password, "name": name}
            answer = _checked(await http.post("/auth/register", json=body))
        return cls(url, answer["token"], **options)

    # --- REST ----------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
                      params: dict[str, Any] | None = None) -> Any:  # fmt: skip
        """The decoded JSON answer (None for 204); ApiError for anything but a success."""
        return _checked(await self.http.request(method, path, json=json, headers=headers, params=params))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Any:
        return await self.request("POST", path, json=json, headers=headers)

    async def patch(self, path: str, json: Any, headers: dict[str, str] | None = None) -> Any:
        return await self.request("PATCH", path, json=json, headers=headers)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def pages(self, path: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list route, page after page."""
        after: str | None = None
        while True:
            page = await self.get(path, **params, **({"after": after} if after else {}))
            for item in page["items"]:
                yield item
            after = page["next"]
            if after is None:
                return

    # --- the websocket -------------------------------------------------------------------------

    def subscribe(self, stream: str, params: dict[str, Any] | None = None, since: str | None = None) -> Stream:
        """Follow a stream (`documents`, `contacts`, `room`, `orders`, `presence`, `online`). With `since`,
        first what happened after that cursor. Dropped connections are resumed, nothing missed or twice."""
        sub_id = f"s{next(self.serial)}"
        queue: asyncio.Queue[Item] = asyncio.Queue(self.queue_size)
        self.queues[sub_id] = queue
        self._send_now(self.state.add(sub_id, stream, params or {}, since))
        if self.ended is not None:
            queue.put_nowait(self.ended)
        return Stream(self, sub_id, queue)

    def _resume(self, sub_id: str) -> None:
        frame = self.state.resume(sub_id)
        if frame is not None:
            self._send_now(frame)

    async def send_chat(self, room: str, text: str, client_id: str | None = None,
                        timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Send a chat message and wait for it to be stored: the message. Sent again after a drop with
        the same `client_id`, so it is stored once."""
        if self.ended is not None:
            raise self.ended
        client_id = client_id or uuid.uuid4().hex
        acked = self.acks.setdefault(client_id, asyncio.get_running_loop().create_future())
        self._send_now(self.state.send_chat(room, text, client_id))
        try:
            return await asyncio.wait_for(asyncio.shield(acked), timeout)
        finally:
            if acked.done():
                self.acks.pop(client_id, None)

    async def ping(self, timeout: float = 10) -> None:
        """A protocol-level ping, answered by a pong."""
        if self.ended is not None:
            raise self.ended
        await asyncio.wait_for(self.ready.wait(), timeout)
        pong = asyncio.get_running_loop().create_future()
        self.pongs.append(pong)
        self._send_now({"type": "ping"})
        try:
            await asyncio.wait_for(pong, timeout)
        finally:
            with contextlib.suppress(ValueError):  # a pong lost with a connection must not take the next one
                self.pongs.remove(pong)

    def _unsubscribe(self, sub_id: str) -> None:
        self._send_now(self.state.remove(sub_id))
        queue = self.queues.pop(sub_id, None)
        if queue is not None:
            self._put_last(queue, None)

    def _send_now(self, frame: dict[str, Any]) -> None:
        """Send if connected (in order, by the connection's writer); otherwise the frame waits in
        `state` for the next connection, which starts with it."""
        if self.ready.is_set():
            self.outbox.put_nowait(frame)

    async def _write(self, socket: ClientConnection) -> None:
        """Send the outbox in order, paced under the server's frame limit (WS_FRAME_RATE, 50 a second in
        bursts of 100 by default): a reconnect with many subscriptions and unacknowledged sends would
        otherwise have frames refused, and those refusals cannot name the frame they refuse."""
        tokens, last = float(BURST), time.monotonic()
        with contextlib.suppress(ConnectionClosed):  # what was not sent is sent from `state` next time
            while True:
                frame = await self.outbox.get()
                now = time.monotonic()
                tokens = min(float(BURST), tokens + (now - last) * RATE)
                last = now
                if tokens < 1:
                    await asyncio.sleep((1 - tokens) / RATE)
                    tokens, last = 1.0, time.monotonic()
                tokens -= 1
                await socket.send(json.dumps(frame))

    async def _run(self) -> None:
        """Connect, resubscribe, read; after any drop, again with backoff, until the session ends. An
        error no retry can mend ends every stream with it instead of leaving them waiting."""
        failures = 0
        while True:
            opened = time.monotonic()
            why = "the server closed the connection"
            try:
                async with connect(self.ws_url, additional_headers=self._headers(), max_size=MAX_FRAME) as socket:
                    await self._open(socket)
                    writer = asyncio.create_task(self._write(socket))
                    try:
                        async for raw in socket:
                            self._dispatch(json.loads(raw))
                    finally:
                        writer.cancel()
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == SESSION_ENDED:
                    self._end(SessionEnded(closed.rcvd.reason or "the session ended"))
                    return
                why = f"closed ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
            except (OSError, InvalidHandshake, TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"
            except MurmurationError as error:
                self._end(error)
                return
            except Exception as error:  # a bug, or an answer that is not the protocol: say so, do not spin
                log.exception("murmuration: the connection failed")
                self._end(MurmurationError(f"the connection failed: {type(error).__name__}: {error}"))
                return
            finally:
                self.ready.clear()
                self.outbox = asyncio.Queue()
            failures = 1 if time.monotonic() - opened >= STABLE else failures + 1
            delay = min(self.max_backoff, 0.25 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
            log.warning("murmuration: %s; reconnecting to %s in %.1f s", why, self.ws_url, delay)
            await asyncio.sleep(delay)

    def _headers(self) -> dict[str, str]:
        return {} if self.first_frame_auth else {"Authorization": f"Bearer {self.token}"}

    async def _open(self, socket: ClientConnection) -> None:
        if self.first_frame_auth:
            await socket.send(json.dumps({"type": "auth", "token": self.token}))
        first = json.loads(await asyncio.wait_for(socket.recv(), 15))
        if first.get("type") == "error" and first.get("code") == "unauthorized":
            raise SessionEnded(str(first.get("message") or "the token was refused"))
        if first.get("type") != "ready":
            raise OSError(f"expected ready, got {first.get('type')}")
        # Queued and marked ready in one step (no await between): a subscription made meanwhile is
        # either in on_connect's frames or sent after them, never in neither.
        for frame in self.state.on_connect():
            self.outbox.put_nowait(frame)
        self.ready.set()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        """Route one frame; never waits, so one consumer cannot hold up the socket and the others."""
        delivery = self.state.receive(frame)
        if delivery.kind == "event" and delivery.event is not None:
            self._deliver(delivery.event)
        elif delivery.kind == "refused":
            error_type = CursorExpired if frame.get("code") == "cursor_expired" else Refused
            error = error_type(str(frame.get("code")), str(frame.get("message")), delivery.subscription)
            queue = self.queues.pop(delivery.subscription, None) if delivery.subscription else None
            if queue is not None:
                self._put_last(queue, error)
            elif frame.get("client_id") in self.acks:
                self.acks.pop(frame["client_id"]).set_exception(error)
        elif delivery.kind == "ack":
            acked = self.acks.pop(frame["client_id"], None)
            if acked is not None and not acked.done():
                acked.set_result(frame.get("message") or {})
        elif delivery.kind == "pong" and self.pongs:
            pong = self.pongs.pop(0)
            if not pong.done():
                pong.set_result(None)

    def _deliver(self, event: Event) -> None:
        queue = self.queues.get(event.subscription)
        if queue is None:
            return
        if queue.full():  # the consumer is behind: pause it; it resumes from this event's predecessor
            paused = self.state.pause(event.subscription)
            if paused is not None:
                self._send_now(paused)
            return
        queue.put_nowait(event)
        self.state.delivered(event.subscription, event.cursor)

    def _put_last(self, queue: asyncio.Queue[Item], last: Event | MurmurationError | None) -> None:
        """Queue the end of a stream behind what it holds, even when it is full."""
        try:
            queue.put_nowait(last)
        except asyncio.QueueFull:
            task = asyncio.create_task(queue.put(last))
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    def _end(self, error: MurmurationError) -> None:
        self.ended = error
        self._finish(error, error)

    def _finish(self, last: MurmurationError | None, unsent: MurmurationError) -> None:
        """End every stream with `last` (None: a plain end), after the events it still holds, and fail
        every chat send not acknowledged with `unsent`."""
        for queue in self.queues.values():
            self._put_last(queue, last)
        for acked in self.acks.values():
            if not acked.done():
                acked.set_exception(unsent)


def _checked(answer: httpx.Response) -> Any:
    if answer.is_success:
        return answer.json() if answer.content else None
    try:
        error = answer.json()["error"]
        raise ApiError(answer.status_code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        raise ApiError(answer.status_code, "unknown", answer.text[:200]) from None
