"""Sanic's worker manager, made to honour a SIGTERM that arrives while its workers start.

Sanic 25.12's main process waits for every worker to acknowledge its start (`wait_for_ack`). A
SIGTERM then terminates the workers and posts a `None` to the monitor pipe; the wait reads that
message, posts it back, and polls again, for good: the workers it waits for are gone. The process
ignored the signal (a container is SIGKILLed at the end of its grace period; `make test` waited 20 s
per quick stop). Here the wait ends once shutdown has begun, and the monitor loop after it reads the
`None` and stops as on any other signal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sanic.worker.manager import WorkerManager

_all_acked: Callable[[Any], bool] = WorkerManager._all_workers_ack


def _acked_or_shutting_down(self: Any) -> bool:
    return bool(self._shutting_down) or _all_acked(self)


def install(manager: type = WorkerManager) -> None:
    """End the start-up wait once shutdown has begun; refuse a Sanic whose manager lacks what this reads."""
    shutdown = getattr(manager, "shutdown", None)
    names = getattr(getattr(shutdown, "__code__", None), "co_names", ())
    if not callable(getattr(manager, "_all_workers_ack", None)) or "_shutting_down" not in names:
        raise RuntimeError("Sanic's WorkerManager changed (_all_workers_ack, _shutting_down): adapt service/manager.py")
    manager._all_workers_ack = _acked_or_shutting_down  # type: ignore[attr-defined]
