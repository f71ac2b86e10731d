"""`make bench`: Murmuration side by side with its peers, on this machine, in one run.

REST (wrk, 64 connections): authenticated GET /contacts (20 items) and POST /contacts, against the
seed's bare Sanic app and a FastAPI + uvicorn app with the same routes, same worker count, same
mongod and data. Fan-out: 1 / 1,000 / 5,000 / 10,000 websocket clients on one document. Resume: replay
of 1,000 missed events. Prints a table and writes bench/results/latest.md and latest.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import spy  # noqa: E402  (bench/, next to this script)

from deploy.local import debian  # noqa: E402
from deploy.local.mongo import MongoNode, free_port, initiate, kill_group, port_is_open, terminate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORKERS = os.environ.get("BENCH_WORKERS", "1")
DURATION = os.environ.get("BENCH_SECONDS", "10")
FANOUT = [int(n) for n in os.environ.get("BENCH_FANOUT", "1,1000,5000,10000").split(",")]
STAGES = set(os.environ.get("BENCH_ONLY", "rest,fanout,resume").split(","))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_is_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{command} did not start; see {log}")
        time.sleep(0.1)
    time.sleep(1)
    return process


def profile_path(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-{name}.folded"
    raw.unlink(missing_ok=True)
    return raw


def report_profile(name: str) -> None:
    raw = RESULTS / f"profile-{name}.folded"
    if raw.exists():
        (RESULTS / f"profile-{name}.md").write_text(spy.summarize(raw.read_text(), name))
        say(f"profile of the worker: bench/results/profile-{name}.md")


@contextlib.contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """With BENCH_PROFILE=1, sample the worker with py-spy while the block runs."""
    if not PROFILE:
        yield
        return
    recording = spy.record(pid, profile_path(name))
    try:
        yield
    finally:
        spy.stop(recording)
    report_profile(name)


def worker_pid(mongo_url: str) -> int:
    """The Sanic worker that serves (each hub records its pid), whose CPU and memory are measured."""
    from pymongo import MongoClient

    with MongoClient(mongo_url) as client:
        return int(client["bench"].instances.find_one({}, sort=[("heartbeat_at", -1)])["pid"])


def milliseconds(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(binary: str, url: str, token: str | None, method: str, tmp: Path) -> dict[str, float]:
    script = tmp / f"{method}.lua"
    body = json.dumps({"name": "bench", "email": "bench@example.com", "tags": ["x"]})
    script.write_text(
        f'wrk.method = "{method}"\nwrk.headers["Content-Type"] = "application/json"\n'
        + (f"wrk.body = '{body}'\n" if method == "POST" else "")
        + (f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else "")
    )
    out = subprocess.run([binary, "-t2", "-c64", f"-d{DURATION}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = milliseconds(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = milliseconds(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": float(errors.group(1)) if errors else 0.0}


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    node = MongoNode(free_port(), tmp / "mongo")
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"workers": WORKERS, "seconds": DURATION}
    try:
        binary = debian.ensure("wrk")
        say("starting mongod")
        node.start()
        mongo_url = initiate([node])
        base_env = {**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": "bench", "WORKERS": WORKERS, "HOST": "127.0.0.1"}
        ours_port = free_port()
        # Limits off: the bench measures speed (a write budget would turn the POST flood into 429s).
        ours_env = {**base_env, "PORT": str(ours_port), "RATE_LIMIT": "10000000", "RATE_BURST": "10000000",
                    "ANON_RATE_LIMIT": "10000000", "WRITE_BUDGET": str(1 << 40), "PAYMENT_WORKERS": "0",
                    "LOG_LEVEL": "warning"}  # fmt: skip
        ours = start([sys.executable, "-m", "service"], ours_env, ours_port, tmp / "ours.log")
        processes.append(ours)
        url = f"http://127.0.0.1:{ours_port}"
        user = httpx.post(f"{url}/auth/register", json={"email": "bench@example.com", "password": "bench pass",
                                                        "name": "Bench"}).json()  # fmt: skip
        token = user["token"]
        auth = {"Authorization": f"Bearer {token}"}
        for i in range(20):
            httpx.post(f"{url}/contacts", json={"name": f"contact {i}", "email": f"c{i}@example.com"}, headers=auth)

        pid = worker_pid(mongo_url)
        if "rest" in STAGES:
            results["rest"] = rest(binary, url, token, base_env, tmp, pid)
        if "fanout" in STAGES:
            results["fanout"] = []
            for clients in FANOUT:
                doc = httpx.post(f"{url}/documents", json={"title": f"fan-out {clients}"}, headers=auth).json()
                say(f"fan-out: {clients} websocket clients on one document")
                # The generator profiles the worker itself, around its writes only (not the connects).
                extra = ["--profile", str(profile_path(f"fanout-{clients}"))] if PROFILE else []
                out = subprocess.run(
                    [sys.executable, "bench/fanout.py", "--url", url, "--ws", f"ws://127.0.0.1:{ours_port}/ws",
                     "--token", token, "--document", doc["id"], "--pid", str(pid), "--clients", str(clients),
                     "--writes", "5" if clients > 1 else "50", "--rate", "2" if clients > 1 else "20", *extra],
                    cwd=ROOT, capture_output=True, text=True, timeout=900,
                )  # fmt: skip
                if out.returncode != 0:
                    log = (tmp / "ours.log").read_text(errors="replace")[-1500:]
                    say(f"fan-out {clients} failed: {out.stderr[-800:]}\nthe service's log ends with:\n{log}")
                    continue
                report_profile(f"fanout-{clients}")
                results["fanout"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        if "resume" in STAGES:
            say("resume: replay of 1,000 missed events")
            results["resume"] = resume(url, f"ws://127.0.0.1:{ours_port}/ws", token)
    finally:
        for process in processes:
            terminate(process, 10)
            kill_group(process)
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    return 0


def rest(binary: str, url: str, token: str, base_env: dict[str, str], tmp: Path, pid: int) -> dict[str, Any]:
    say(f"REST: wrk -c64 -d{DURATION}s against murmuration")
    with profiled(pid, "get-contacts"):
        ours = {"get": wrk(binary, f"{url}/contacts", token, "GET", tmp)}
    ours["post"] = wrk(binary, f"{url}/contacts", token, "POST", tmp)
    figures = {"murmuration": ours}
    peers = {
        "seed-sanic": [sys.executable, "bench/peers/seed_sanic.py"],
        "fastapi": [sys.executable, "-m", "uvicorn", "bench.peers.fastapi_app:app", "--host", "127.0.0.1",
                    "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--workers", WORKERS],
    }  # fmt: skip
    for name, command in peers.items():
        port = free_port()
        if name == "fastapi":
            command = [*command, "--port", str(port)]
        peer = start(command, {**base_env, "PORT": str(port)}, port, tmp / f"{name}.log")
        say(f"REST: wrk against {name}")
        figures[name] = {
            "get": wrk(binary, f"http://127.0.0.1:{port}/contacts", None, "GET", tmp),
            "post": wrk(binary, f"http://127.0.0.1:{port}/contacts", None, "POST", tmp),
        }
        terminate(peer, 10)
    return figures


def resume(url: str, ws_url: str, token: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    with connect(ws_url, additional_headers=headers) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "subscribe", "id": "c", "stream": "contacts"}))
        ws.recv()
        httpx.post(f"{url}/contacts", json={"name": "mark"}, headers=headers)
        cursor = json.loads(ws.recv())["cursor"]
    with httpx.Client(base_url=url, headers=headers) as http:
        for i in range(1000):
            http.post("/contacts", json={"name": f"missed {i}"})
    with connect(ws_url, additional_headers=headers, max_queue=None) as ws:
        ws.recv()
        started = time.perf_counter()
        ws.send(json.dumps({"type": "subscribe", "id": "c", "stream": "contacts", "since": cursor}))
        count = 0
        while json.loads(ws.recv())["type"] != "subscribed":
            count += 1
        return {"events": count, "seconds": time.perf_counter() - started}


def report(results: dict[str, Any]) -> None:
    lines = [f"# Benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
             f"{results['workers']} worker(s) each, wrk -c64 -d{results['seconds']}s)"]  # fmt: skip
    if "rest" in results:
        rest = results["rest"]
        ours = rest["murmuration"]
        lines += ["", "| REST | req/s | p50 ms | p99 ms | ours / it |", "| --- | ---: | ---: | ---: | ---: |"]
        for route in ("get", "post"):
            for name, figures in rest.items():
                f = figures[route]
                ratio = ours[route]["rps"] / f["rps"] if f["rps"] else float("nan")
                label = f"{'GET' if route == 'get' else 'POST'} /contacts, {name}"
                lines.append(f"| {label} | {f['rps']:.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {ratio:.2f}x |")
    if "fanout" in results:
        header = "| clients | delivered | p50 ms | p99 ms | max ms | events/s | CPU % | RSS MB | KB/idle socket |"
        lines += ["", "Fan-out of writes to one document:", "", header, "|" + " ---: |" * 9]
        for f in results["fanout"]:
            cells = [f["clients"], f"{f['received']}/{f['expected']}", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
                     f"{f['max_ms']:.1f}", f"{f['events_per_s']:.0f}", f"{f['server_cpu_percent']:.0f}",
                     f"{f['server_rss_mb']:.0f}", f"{f['rss_per_idle_kb']:.1f}"]  # fmt: skip
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    if "resume" in results:
        r = results["resume"]
        lines += ["", f"Resume: {r['events']} missed events replayed in {r['seconds']:.2f} s."]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(table + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
