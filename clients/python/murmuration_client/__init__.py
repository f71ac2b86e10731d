"""Murmuration's Python client: REST over httpx, websocket streams that resume from their cursor."""

from .client import Client, Stream
from .errors import ApiError, CursorExpired, MurmurationError, Refused, SessionEnded
from .subscriptions import Event

__all__ = ["ApiError", "Client", "CursorExpired", "Event", "MurmurationError", "Refused", "SessionEnded", "Stream"]
