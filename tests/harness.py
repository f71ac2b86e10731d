"""Real things for tests: a running service process, accounts on it, and waiting with deadlines."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from deploy.local.gateway import GatewayServer
from deploy.local.mailsink import MailSink, code_in
from deploy.local.mongo import free_port, kill_group, terminate

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "test-logs"
T = TypeVar("T")
_serial = itertools.count()


def wait_for(
    condition: Callable[[], T], timeout: float = 20.0, what: str = "condition", seen: Callable[[], str] | None = None
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds,
    and with what `seen()` says was there instead."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            instead = f"; {seen()}" if seen is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{instead}")
        time.sleep(0.02)


@dataclass
class Server:
    """`python -m service` in a subprocess, on its own port and database."""

    mongo_url: str
    db_name: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log_path(self) -> Path:
        return LOGS / f"{self.db_name}-{self.port}.log"

    def start(self, timeout: float = 60.0) -> Server:
        LOGS.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MONGO_URL": self.mongo_url,
            "MONGO_DB": self.db_name,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "INSTANCE_NAME": f"test-{self.port}",
            # Test modules sign up many users from one address; the modules about limits set their own.
            "REGISTER_LIMIT": "100000",
            # Letters go to this process's mail sink, where `Account.register` reads its verification code.
            "SMTP_URL": mail_sink().url,
            "MAIL_BACKOFF": "0.2",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes the workers down too
            )
        wait_for(self._ready, timeout, f"the service on port {self.port} to answer /health (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: Sanic drains and stops its workers."""
        process, self.process = self.process, None
        terminate(process, timeout)

    def __enter__(self) -> Server:
        """`with Server(...) as server:` starts it (unless it runs already: `with Server(...).start()`
        once started a second process and left the first running), and stops it however the block ends."""
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """Crash the whole instance (main process and Sanic workers) with SIGKILL: no cleanup runs."""
        process, self.process = self.process, None
        kill_group(process)


_sink: list[MailSink] = []


def mail_sink() -> MailSink:
    """The mail sink every server of this test process sends to (started on first use)."""
    if not _sink:
        _sink.append(MailSink().start())
    return _sink[0]


def unique_email(name: str) -> str:
    return f"{name.lower()}-{next(_serial)}-{uuid.uuid4().hex[:8]}@example.com"


class Account(httpx.Client):
    """A registered user: an HTTP client that sends its bearer token on every request."""

    user: dict[str, Any]
    token: str
    email: str
    password: str

    @classmethod
    def register(
        cls,
        base_url: str,
        name: str = "Ann",
        password: str = "correct horse",
        verified: bool = True,
        email: str | None = None,
    ) -> Account:
        """A new account (at `email`, or a fresh address); `verified`: its address proven with the code
        from its letter, as people do (others can share with it by email)."""
        email = email or unique_email(name)
        answer = httpx.post(
            f"{base_url}/auth/register", json={"email": email, "password": password, "name": name}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        account = cls(base_url=base_url, headers={"Authorization": f"Bearer {body['token']}"}, timeout=30)
        account.user, account.token, account.email, account.password = body["user"], body["token"], email, password
        if verified:
            account.verify()
        return account

    def verify(self) -> None:
        """Read the verification letter from the mail sink and send its code."""
        letter = mail_sink().mailbox.wait(self.email, "#verify=")[0]
        answer = self.post("/auth/verify", json={"token": code_in(letter, "verify")})
        assert answer.status_code == 200, answer.text
        self.user = answer.json()["user"]

    @property
    def id(self) -> str:
        return str(self.user["id"])


PAYMENT_KEYS = {
    "BRAINTREE_MERCHANT_ID": "local-merchant",
    "BRAINTREE_PUBLIC_KEY": "local-public",
    "BRAINTREE_PRIVATE_KEY": "local-private",
}
CATALOG = {
    "currency": "USD",
    "items": [
        {"sku": "tee", "name": "T-shirt", "price": "19.99"},
        {"sku": "mug", "name": "Mug", "price": "12.50"},
        {"sku": "declined-2001", "name": "Declined by amount", "price": "2001.00"},
        {"sku": "failed-3000", "name": "Failed by amount", "price": "3000.00"},
        {"sku": "rejected-5001", "name": "Gateway rejected by amount", "price": "5001.00"},
    ],
}


def payments_env(gateway: GatewayServer) -> dict[str, str]:
    """Server settings for payments through the local gateway emulator, with a test catalog."""
    catalog = ROOT / "var" / f"catalog-{gateway.server_address[1]}.json"
    catalog.parent.mkdir(exist_ok=True)
    catalog.write_text(json.dumps(CATALOG))
    return {**PAYMENT_KEYS, "BRAINTREE_ENVIRONMENT": gateway.url, "CATALOG_PATH": str(catalog),
            "BRAINTREE_TIMEOUT": "2", "PAYMENT_LEASE": "7", "PAYMENT_POLL": "0.2",
            "PAYMENT_SETTLE_DELAY": "1", "PAYMENT_SWEEP": "1"}  # fmt: skip
