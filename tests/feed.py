"""A websocket client for tests: the real `websockets` library, speaking the /ws protocol."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .harness import Account, Server


class Feed:
    """One connection to /ws. Frames are read in order; nothing is skipped unless asked."""

    def __init__(
        self,
        server: Server,
        account: Account | None = None,
        *,
        header: bool = True,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        headers = dict(headers or {})
        if account is not None and header:
            headers["Authorization"] = f"Bearer {account.token}"
        self._connection = connect(server.ws_url, additional_headers=headers, open_timeout=20, **options)
        self.ws: ClientConnection = self._connection.__enter__()
        self.ready: dict[str, Any] | None = None
        if account is not None and header:
            self.ready = self.expect("ready")

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def send(self, **frame: Any) -> None:
        self.ws.send(json.dumps(frame))

    def recv(self, timeout: float = 15.0) -> dict[str, Any]:
        try:
            frame: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            raise AssertionError(f"no frame within {timeout:.0f}s") from None
        return frame

    def expect(self, kind: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """The next frame, which must be of type `kind` with these fields."""
        frame = self.recv(timeout)
        assert frame.get("type") == kind, f"expected {kind} {fields}, got {frame}"
        for key, value in fields.items():
            assert frame.get(key) == value, f"expected {key}={value!r} in {frame}"
        return frame

    def subscribe(
        self, sub: str, stream: str, params: dict[str, Any] | None = None, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Subscribe and return the events replayed before `subscribed`."""
        frame: dict[str, Any] = {"type": "subscribe", "id": sub, "stream": stream}
        if params is not None:
            frame["params"] = params
        if since is not None:
            frame["since"] = since
        self.send(**frame)
        replayed = []
        while True:
            got = self.recv()
            if got["type"] == "subscribed" and got["id"] == sub:
                return replayed
            assert got["type"] == "event" and got["sub"] == sub, f"while subscribing {sub}: {got}"
            replayed.append(got)

    def event(self, sub: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        frame = self.expect("event", timeout)
        if sub is not None:
            assert frame["sub"] == sub, frame
        return frame

    def events(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.event(timeout=max(0.1, deadline - time.monotonic())) for _ in range(count)]

    def closed_with(self, timeout: float = 30.0) -> int | None:
        """Read until the server closes; the close code it sent."""
        return self.closed(timeout)[0]

    def closed(self, timeout: float = 30.0) -> tuple[int | None, str]:
        """Read until the server closes; the close code and reason it sent."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd is not None else (None, "")
        except TimeoutError:
            pass
        raise AssertionError(f"the server did not close the connection within {timeout:.0f}s")


def cursor_after_a_write(server: Server, account: Account) -> str:
    """The cursor a client holds after seeing one contact of its own created, then disconnecting."""
    with Feed(server, account) as feed:
        feed.subscribe("c", "contacts")
        account.post("/contacts", json={"name": "seen before the drop"})
        return str(feed.event("c")["cursor"])
