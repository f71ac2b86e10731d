"""The OpenAPI document as tools see it: Schemathesis, a contract tester, runs every check against it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
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


ENDS_THE_SESSION = ["/auth/logout", "/auth/sessions/{session_id}"]


def test_schemathesis_with_every_check_finds_nothing(server, signup) -> None:
    # Logging out (or ending a session listed by GET /auth/sessions, which the stateful phase follows)
    # ends the session the run uses: those are run on their own, below.
    excluded = [option for path in ENDS_THE_SESSION for option in ("--exclude-path", path)]
    schemathesis(server.url, signup().token, "all", *excluded)


@pytest.mark.parametrize("path", ENDS_THE_SESSION)
def test_schemathesis_finds_nothing_in_what_ends_the_session(server, signup, path: str) -> None:
    schemathesis(server.url, signup().token, path.split("/")[2], "--include-path", path)


# Cases other seeds (and an attack) found: each is what the document says, held by the service.


@pytest.mark.parametrize("query", ["limit=", "limit=%205%20", "limit=5&limit=50"])
def test_a_limit_that_is_not_one_whole_number_as_sent_is_a_422(signup, query: str) -> None:
    answer = signup().get(f"/contacts?{query}")
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "limit"


def test_a_byte_order_mark_is_whitespace_as_ecmascript_says(signup, anon) -> None:
    ann = signup()
    assert ann.post("/documents", json={"title": " \ufeff "}).status_code == 422
    assert ann.post("/documents", json={"title": "\ufeffPlans"}).json()["title"] == "Plans"
    email = f"bom-{uuid.uuid4().hex[:8]}@example.com"
    body = {"password": "correct horse", "name": "Bom"}
    assert anon.post("/auth/register", json={**body, "email": email + "\ufeff"}).json()["user"]["email"] == email
    assert anon.post("/auth/register", json={**body, "email": "\ufeff" + email}).status_code == 409  # no lookalike


def test_a_sku_is_one_of_the_catalogs_as_sent(signup) -> None:
    answer = signup().post("/orders", json={"items": [{"sku": " tee ", "quantity": 1}], "payment_method_nonce": "n"},
                           headers={"Idempotency-Key": "k-padded-sku"})  # fmt: skip
    assert answer.status_code == 422


def test_an_address_with_no_account_is_a_pending_invite_not_a_404_for_the_path(signup) -> None:
    ann = signup()
    room = ann.post("/rooms", json={"name": "r"}).json()
    doc = ann.post("/documents", json={"title": "d"}).json()
    nobody = "nobody@example.com"
    for path, body in ((f"/rooms/{room['id']}/members", {"email": nobody}),
                       (f"/documents/{doc['id']}/collaborators", {"email": nobody, "role": "viewer"})):  # fmt: skip
        answer = ann.post(path, json=body)
        assert answer.status_code == 202 and answer.json()["invite"]["email"] == nobody


def test_a_header_too_large_is_a_413_that_says_so(signup) -> None:
    answer = signup().get("/contacts", headers={"X-Big": "x" * 20_000})
    assert answer.status_code == 413 and "body" not in answer.json()["error"]["message"]
