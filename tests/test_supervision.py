"""Nothing dies silently: a background task that fails is logged, counted and restarted, and /health
says so while it is down.

No data can make the service's own tasks fail any more (test_storage.py writes junk into every
collection and checks that no task restarts), so here a fault is injected into a running task: one
of the parts it calls raises once, as a bug would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from deploy.local.gateway import GatewayServer
from deploy.local.mongo import free_port
from models.contacts import ContactIn
from service import contacts, health, manager
from service.context import Context
from service.supervisor import Supervisor

from .harness import ROOT, Server, payments_env, wait_for
from .parts import Outbox, account, session, until


def restarts(task: str) -> float:
    return REGISTRY.get_sample_value("murmuration_task_restarts_total", {"task": task}) or 0.0


async def forever() -> None:
    await asyncio.Event().wait()


def test_a_failed_task_is_restarted_counted_and_reported() -> None:
    async def main() -> None:
        supervisor = Supervisor(first_backoff=0.01, max_backoff=0.05)
        runs: list[int] = []

        async def flaky() -> None:
            runs.append(1)
            if len(runs) <= 2:
                raise RuntimeError(f"failure {len(runs)}")
            await forever()

        counted = restarts("flaky")
        supervisor.start("flaky", flaky)
        await until(lambda: len(runs) == 3)
        assert supervisor.report()["flaky"] == {
            "state": "running",
            "restarts": 2,
            "last_error": "RuntimeError: failure 2",
        }
        assert supervisor.healthy() and restarts("flaky") == counted + 2
        await supervisor.stop(["flaky"])
        assert supervisor.report()["flaky"]["state"] == "stopped" and not supervisor.healthy()

    asyncio.run(main())


def test_a_task_that_keeps_failing_is_crash_looping_and_unhealthy_even_while_up() -> None:
    async def main() -> None:
        supervisor = Supervisor(first_backoff=0.01, max_backoff=0.02)
        runs: list[int] = []

        async def looping() -> None:
            runs.append(1)
            if len(runs) <= 3:
                raise ValueError("again")
            await forever()

        supervisor.start("looping", looping)
        await until(lambda: len(runs) == 4)
        assert supervisor.report()["looping"]["state"] == "crash_looping" and not supervisor.healthy()
        await supervisor.stop(["looping"])

    asyncio.run(main())


def fail_once(owner: Any, name: str) -> list[str]:
    """Make `owner.name()` raise once, as a bug would; the list fills when it did."""
    original, failed = getattr(owner, name), []

    def broken(*args: Any, **kwargs: Any) -> Any:
        setattr(owner, name, original)
        failed.append(name)
        raise RuntimeError(f"injected into {name}")

    setattr(owner, name, broken)
    return failed


async def degraded_then_healthy(context: Context, task: str, failed: list[str], poke: Callable[[], Any]) -> None:
    """Wait for the injected failure, see /health say it, then see the task back and /health ok."""
    seen: list[dict[str, Any]] = []

    def noticed() -> bool:
        return bool(failed) and context.supervisor.report()[task]["restarts"] >= 1

    deadline = asyncio.get_running_loop().time() + 10
    while not noticed():
        assert asyncio.get_running_loop().time() < deadline, f"{task} never failed"
        await poke()
        await asyncio.sleep(0.02)
    ok, body = await health.check(context)
    seen.append(body)
    assert not ok and body["status"] == "degraded" and body["tasks"][task]["state"] == "restarting", seen
    assert "injected" in body["tasks"][task]["last_error"]
    await until(lambda: context.supervisor.report()[task]["state"] == "running")
    ok, body = await health.check(context)
    if task == "hub-follow":  # back once its stream answers again
        await until(lambda: context.hub.following)
        ok, body = await health.check(context)
    assert ok and body["tasks"][task] == {
        "state": "running",
        "restarts": 1,
        "last_error": body["tasks"][task]["last_error"],
    }


def test_the_change_stream_follower_is_restarted_without_losing_an_event(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        user, token = await account(context)
        await context.accounts.authenticate(token)
        assert context.accounts.cache  # the token is cached while the stream follows
        out = Outbox()
        async with session(context, out) as ws:
            await ws.authenticate(token)
            await ws.receive('{"type": "subscribe", "id": "c", "stream": "contacts"}')
            failed = fail_once(context.hub, "dispatch")
            counted = restarts("hub-follow")

            async def write() -> None:
                if not failed:
                    await contacts.create(context.db, user, ContactIn(name="during the failure"))

            await write()
            await until(lambda: bool(failed))
            assert not context.hub.following and not context.accounts.trusted() and not context.accounts.cache
            await degraded_then_healthy(context, "hub-follow", failed, write)
            await until(lambda: "event" in out.types())
            events = [f for f in out.frames if f["type"] == "event"]
            assert [e["data"]["name"] for e in events] == ["during the failure"]  # replayed once, not lost
            assert restarts("hub-follow") == counted + 1

    run(scenario)


def test_the_heartbeat_is_restarted_and_health_is_degraded_meanwhile(run: Callable[..., None]) -> None:
    async def scenario(context: Context) -> None:
        failed = fail_once(context.roster, "beat")

        async def nothing() -> None:
            return None

        await degraded_then_healthy(context, "roster-heartbeat", failed, nothing)

    run(scenario, PRESENCE_TTL="2")


def test_a_payment_loop_is_restarted_and_health_is_degraded_meanwhile(
    run: Callable[..., None], gateway: GatewayServer
) -> None:
    async def scenario(context: Context) -> None:
        assert context.payments is not None
        failed = fail_once(context.payments, "claim")

        async def nudge() -> None:
            assert context.payments is not None
            context.payments.nudge()

        tasks = [name for name in context.supervisor.report() if name.startswith("payments-")]
        await nudge()
        await until(lambda: bool(failed))
        task = next(name for name in tasks if context.supervisor.report()[name]["restarts"] or
                    context.supervisor.report()[name]["state"] == "restarting")  # fmt: skip
        await degraded_then_healthy(context, task, failed, nudge)

    run(scenario, **payments_env(gateway))


def test_a_sigterm_as_soon_as_the_service_answers_stops_it_at_once(mongo_url: str, mongo) -> None:
    # Sanic's main process, still waiting for its worker's start acknowledgement, ignored it (half
    # of the time here): a container was SIGKILLed at the end of its grace period.
    for attempt in range(4):
        server = Server(mongo_url, f"t_sigterm_{attempt}").start()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        try:
            assert server.process.wait(10) == 0, server.log_tail()
        finally:
            server.kill()
        mongo.drop_database(f"t_sigterm_{attempt}")


def test_a_sanic_whose_manager_changed_is_refused_at_start() -> None:
    class Changed:
        def shutdown(self) -> None:  # no longer marks the manager as shutting down
            pass

    with pytest.raises(RuntimeError, match=r"adapt service/manager\.py"):
        manager.install(Changed)


def first_child(pid: int, timeout: float = 10.0) -> None:
    """Wait until `pid` has started a child process (Sanic's helpers: start-up is under way)."""
    wait_for(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().split(), timeout, "a child process")


def group(leader: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(leader)], capture_output=True, text=True).stdout.split()


def gone(leader: int) -> None:
    wait_for(lambda: not group(leader), 10, "no process of the service left", lambda: str(group(leader)))


def started(mongo_url: str, name: str, pid_one: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": name, "PORT": str(free_port()), "HOST": "127.0.0.1"}
    command = [sys.executable, "-m", "service"]
    if pid_one:  # as in a container without an init: the kernel drops signals PID 1 has no handler for
        command = ["unshare", "--pid", "--fork", "--mount-proc", *command]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


@pytest.mark.parametrize("pid_one", [False, True])
def test_a_sigterm_early_in_the_start_stops_it_and_leaves_no_process_behind(mongo_url: str, pid_one: bool) -> None:
    if pid_one and subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"]).returncode != 0:
        pytest.skip("this machine cannot make a PID namespace (unshare): the container case is not tried")
    for attempt in range(3):
        process = started(mongo_url, f"t_early_{attempt}", pid_one)
        try:
            service = process.pid
            if pid_one:  # the service is unshare's child, PID 1 in its namespace
                first_child(process.pid)
                service = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])
            first_child(service)  # Sanic's helpers are starting: the signal comes in the middle of it
            os.kill(service, signal.SIGTERM)
            assert process.wait(10) == 0
            # Helpers (multiprocessing's resource tracker, Sanic's manager) end once their parent has.
            gone(process.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
