"""Operations: what `/health` answers."""

from __future__ import annotations

from .common import Output


class HealthOut(Output):
    status: str
    mongo: str
    change_stream: str
    instance: str
