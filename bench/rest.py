"""REST side by side: wrk against authenticated `GET /contacts` (20 items) and `POST /contacts`, here
and on the peers, with the server's CPU per request (every process of its session, workers included).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import procs

CONNECTIONS = 64
CONTACT = {"name": "bench", "email": "bench@example.com", "tags": ["x"]}


@dataclass(frozen=True)
class Target:
    """A running REST server: its name in the tables, its base URL, the token it wants (None: no auth),
    and its session leader (whose processes are its cost)."""

    name: str
    url: str
    token: str | None
    leader: int


def _milliseconds(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _script(tmp: Path, method: str, token: str | None) -> Path:
    script = tmp / f"{method}-{'auth' if token else 'anon'}.lua"
    script.write_text(
        f'wrk.method = "{method}"\nwrk.headers["Content-Type"] = "application/json"\n'
        + (f"wrk.body = '{json.dumps(CONTACT)}'\n" if method == "POST" else "")
        + (f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else "")
    )
    return script


def wrk(binary: str, target: Target, method: str, seconds: str, tmp: Path) -> dict[str, float]:
    """One wrk run; req/s, latency percentiles, non-2xx answers and server CPU µs per request."""
    pids = procs.group(target.leader)
    cpu = procs.cpu_seconds(pids)
    command = [binary, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s",
               str(_script(tmp, method, target.token)), f"{target.url}/contacts"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = procs.cpu_seconds(pids) - cpu
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _milliseconds(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _milliseconds(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
        "cpu_us_per_request": 1e6 * cpu / requests if requests else float("nan"),
    }


def measure(binary: str, target: Target, seconds: str, tmp: Path) -> dict[str, dict[str, float]]:
    return {route: wrk(binary, target, route.upper(), seconds, tmp) for route in ("get", "post")}
