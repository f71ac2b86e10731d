"""Operations: what `/health` answers."""

from __future__ import annotations

from pydantic import Field

from .common import Output


class TaskOut(Output):
    state: str = Field(description="running, restarting (down), crash_looping, or stopped")
    restarts: int = Field(description="unexpected failures since start, each followed by a restart")
    last_error: str | None = None


class HealthOut(Output):
    status: str = Field(description="ok, or degraded (503) while anything below is not")
    mongo: str = Field(description="ok or unreachable")
    change_stream: str = Field(description="ok (following) or reconnecting")
    tasks: dict[str, TaskOut] = Field(description="every background task of this worker, by name")
    instance: str
