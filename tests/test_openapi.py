"""The OpenAPI document as tools see it: Schemathesis, a contract tester, runs every check against it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.gateway import GatewayServer

from .harness import ROOT, payments_env

REPORTS = ROOT / "var" / "test-logs"
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Fixed, so `make test` is repeatable and quick; set them to explore further.
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")
EXAMPLES = os.environ.get("SCHEMATHESIS_EXAMPLES", "20")


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    # Generous limits: a contract tester sends thousands of requests as one user.
    return {**payments_env(gateway), "RATE_LIMIT": "1000000", "RATE_BURST": "100000", "ANON_RATE_LIMIT": "1000000"}


def schemathesis(server_url: str, token: str, name: str, *options: str) -> None:
    """Run Schemathesis with every check, a fixed seed and a bounded number of examples; its report is
    kept in var/test-logs/."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
        f"{server_url}/openapi.json", "--checks", "all", "--seed", SEED, "--max-examples", EXAMPLES,
        "--header", f"Authorization: Bearer {token}", "--no-color", "--workers", "1", *options,
    ]  # fmt: skip
    # Run in var/test-logs, where Schemathesis keeps its cache (.schemathesis/), out of the tree.
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPORTS)
    (REPORTS / f"schemathesis-{name}.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-20000:]


def test_schemathesis_with_every_check_finds_nothing(server, signup) -> None:
    # Logging out ends the session the run uses: it is run on its own, below.
    schemathesis(server.url, signup().token, "all", "--exclude-path", "/auth/logout")


def test_schemathesis_finds_nothing_in_logout(server, signup) -> None:
    schemathesis(server.url, signup().token, "logout", "--include-path", "/auth/logout")
