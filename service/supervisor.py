"""The supervisor: every long-lived background task of a worker runs under it.

A task that raises is logged with its traceback, counted (`murmuration_task_restarts_total{task}`)
and started again after a backoff (0.5 s doubling to 30 s; back to 0.5 s once it has run a minute).
Its state is what `/health` reports:

- `running`: up, and not crash-looping;
- `restarting`: it failed and waits for its backoff: down;
- `crash_looping`: up again, but it failed 3 times within the last minute;
- `stopped`: it ended (at shutdown, or by returning).

Anything but `running` makes `/health` answer 503 `degraded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .metrics import TASK_RESTARTS

log = logging.getLogger("murmuration.supervisor")

Work = Callable[[], Coroutine[Any, Any, None]]

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # seconds of running without a failure that reset the backoff
LOOP_FAILURES = 3  # failures within STABLE_AFTER that make a task crash-looping


@dataclass
class Supervised:
    name: str
    work: Work
    state: str = "running"
    restarts: int = 0
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=LOOP_FAILURES))
    last_error: str | None = None
    task: asyncio.Task[None] | None = None

    def shown_state(self, now: float) -> str:
        """Its state as /health tells it: running again, but failing too often, is crash_looping."""
        looping = len(self.failures) == LOOP_FAILURES and now - self.failures[0] < STABLE_AFTER
        return "crash_looping" if self.state == "running" and looping else self.state

    def report(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.shown_state(now), "restarts": self.restarts}
        if self.last_error is not None:
            out["last_error"] = self.last_error
        return out


class Supervisor:
    def __init__(self, first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self.tasks: dict[str, Supervised] = {}
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.clock = time.monotonic

    def start(self, name: str, work: Work) -> None:
        supervised = self.tasks[name] = Supervised(name, work)
        supervised.task = asyncio.create_task(self._run(supervised), name=name)

    async def _run(self, supervised: Supervised) -> None:
        backoff = self.first_backoff
        while True:
            started = self.clock()
            supervised.state = "running"
            try:
                await supervised.work()
            except asyncio.CancelledError:
                supervised.state = "stopped"
                raise
            except Exception as error:
                if self.clock() - started >= STABLE_AFTER:
                    backoff = self.first_backoff
                supervised.state = "restarting"
                supervised.restarts += 1
                supervised.failures.append(self.clock())
                supervised.last_error = f"{type(error).__name__}: {str(error)[:200]}"
                TASK_RESTARTS.labels(supervised.name).inc()
                log.exception("task %s failed; restarting in %.1fs", supervised.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                supervised.state = "stopped"
                return

    def healthy(self) -> bool:
        now = self.clock()
        return all(supervised.shown_state(now) == "running" for supervised in self.tasks.values())

    def report(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: supervised.report(now) for name, supervised in sorted(self.tasks.items())}

    async def stop(self, names: list[str], grace: float = 0.0) -> None:
        """Let the named tasks end by themselves for up to `grace` seconds, then cancel them."""
        tasks = [t for name in names if (s := self.tasks.get(name)) is not None and (t := s.task) is not None]
        if not tasks:
            return
        if grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        # Bounded: a task stuck in a cancelled driver call must not hold the shutdown.
        _, stuck = await asyncio.wait(tasks, timeout=5.0)
        for task in stuck:
            log.warning("task %s did not stop within 5 s of being cancelled; going on without it", task.get_name())
