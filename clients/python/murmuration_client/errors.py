"""Every error the client raises is a MurmurationError.

MurmurationError
├── ApiError          a REST answer that is not 2xx: status, code, message, details
├── Refused           the websocket refused a frame of ours (an `error` frame): code, message
│   └── CursorExpired a subscription's cursor is older than the server can replay
└── SessionEnded      the server closed the socket with 4001: the token no longer works
"""

from __future__ import annotations

from typing import Any


class MurmurationError(Exception):
    """Base of every error this client raises."""


class ApiError(MurmurationError):
    """A REST answer that is not a success, as the contract's error body says it."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []


class Refused(MurmurationError):
    """An `error` frame answering one of our frames (a subscription, a chat send)."""

    def __init__(self, code: str, message: str, subscription: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.subscription = code, message, subscription


class CursorExpired(Refused):
    """The cursor a subscription resumed from is older than the server's window (the oplog's). Events
    were missed and cannot be replayed: reload the state with REST, then subscribe again without
    `since` (a new `Client.subscribe`)."""


class SessionEnded(MurmurationError):
    """The server closed the socket with 4001: logged out, expired or revoked. Sign in again."""
