"""Fixtures: one real MongoDB replica set per run, one real service per test module."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright
from pymongo import MongoClient
from pymongo.database import Database

from deploy.local import debian
from deploy.local.gateway import GatewayServer
from deploy.local.mongo import MongoNode, free_port, initiate
from service.config import Settings
from service.context import Context
from service.lifecycle import running
from service.payments.catalog import Catalog

from .harness import LOGS, ROOT, Account, Server

# Without the background-networking flags Chromium keeps trying Google's hosts, which this network refuses.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, for the module's tests (each opens its own contexts)."""
    launched = playwright.chromium.launch(executable_path=debian.ensure("chromium"), args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """`make test` passes MONGO_URL; a bare `pytest` starts its own throw-away replica set."""
    url = os.environ.get("MONGO_URL")
    if url:
        yield url
        return
    (ROOT / "var").mkdir(exist_ok=True)
    node = MongoNode(port=free_port(), dbpath=Path(tempfile.mkdtemp(dir=ROOT / "var")))
    node.start()
    try:
        yield initiate([node])
    finally:
        node.stop()
        shutil.rmtree(node.dbpath, ignore_errors=True)


@pytest.fixture(scope="session")
def mongo(mongo_url: str) -> Iterator[MongoClient[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_url, tz_aware=True)
    yield client
    client.close()


def _db_name(module: str) -> str:
    return f"t_{module.rsplit('.', 1)[-1].removeprefix('test_')[:40]}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    """The Braintree gateway emulator, in this process, for a module that takes payments."""
    server = GatewayServer(0).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Environment overrides for the module's server; a module redefines this to change settings."""
    return {}


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, mongo_url: str, mongo: MongoClient[dict[str, object]], server_env: dict[str, str]
) -> Iterator[Server]:
    running = Server(mongo_url, _db_name(request.module.__name__), env=server_env).start()
    yield running
    running.stop()
    mongo.drop_database(running.db_name)


@pytest.fixture
def db(server: Server, mongo: MongoClient[dict[str, object]]) -> Database[dict[str, object]]:
    """The server's database, straight through PyMongo (as an operator's tool would see it)."""
    return mongo[server.db_name]


@pytest.fixture
def anon(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def signup(server: Server) -> Iterator[Callable[..., Account]]:
    """`signup("Ann")` registers a new user and returns their authenticated client."""
    made: list[Account] = []

    def make(name: str = "Ann", password: str = "correct horse", **options: Any) -> Account:
        account = Account.register(server.url, name, password, **options)
        made.append(account)
        return account

    yield make
    for account in made:
        account.close()


Scenario = Callable[[Context], Awaitable[None]]


def dump_tasks(loop: asyncio.AbstractEventLoop) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"tasks-{os.getpid()}.txt", "a") as out:
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=out)


@pytest.fixture
def run(mongo_url: str, mongo: MongoClient[dict[str, object]]) -> Iterator[Callable[..., None]]:
    """`run(scenario, **env)`: `scenario(context)` against a running service's parts (the real life
    cycle on the test replica set, no HTTP server), then torn down."""
    names: list[str] = []

    def go(scenario: Scenario, **env: str) -> None:
        names.append(f"t_parts_{uuid.uuid4().hex[:8]}")
        settings = Settings.from_env({"MONGO_URL": mongo_url, "MONGO_DB": names[-1], **env})

        async def main() -> None:
            # `kill -USR1 <pytest>` writes where every task of a scenario waits (for a test that hangs)
            # to var/test-logs/tasks-<pid>.txt.
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, dump_tasks, loop)
            async with running(settings, Catalog.load(settings.catalog_path), 1.0) as context:
                await scenario(context)

        asyncio.run(main())

    yield go
    for name in names:
        mongo.drop_database(name)
