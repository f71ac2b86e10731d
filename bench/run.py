"""`make bench`: Murmuration side by side with its peers, on this machine, in one run, on one mongod.

REST (wrk, 64 connections): authenticated GET /contacts (20 items) and POST /contacts, here with one and
two workers, on the seed's bare Sanic + PyMongo app (the floor of the stack) and on FastAPI doing the
same work. Fan-out: 1 / 1,000 / 5,000 / 10,000 websocket clients on one document, here, on Socket.IO
(Node) and on Django Channels (channels_redis, daphne), every system following the same change stream.
Many readers: one document shared with 5,000 distinct users, each connected once. Idle sockets:
10,000 on a fresh process. Resume: replay of 1,000 missed events. Prints the tables and the targets and
writes bench/results/latest.md and latest.json.
"""

from __future__ import annotations

import contextlib
import json
import os
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

import coediting  # noqa: E402  (bench/, next to this script)
import procs  # noqa: E402
import readers  # noqa: E402
import report  # noqa: E402
import rest  # noqa: E402
import spy  # noqa: E402

from bench.peers import launch  # noqa: E402
from deploy.local import debian  # noqa: E402
from deploy.local.mongo import MongoNode, free_port, initiate, kill_group, port_is_open, terminate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SECONDS = os.environ.get("BENCH_SECONDS", "10")
FANOUT = [int(n) for n in os.environ.get("BENCH_FANOUT", "1,1000,5000,10000").split(",")]
PEERS = [p for p in os.environ.get("BENCH_PEERS", "socketio,channels").split(",") if p]
STAGES = set(os.environ.get("BENCH_ONLY", "rest,fanout,readers,idle,resume,coediting").split(","))
READERS = int(os.environ.get("BENCH_READERS", "5000"))
IDLE = int(os.environ.get("BENCH_IDLE", "10000"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
# Limits off: the bench measures speed (a write budget would turn the POST flood into 429s).
UNLIMITED = {"RATE_LIMIT": "10000000", "RATE_BURST": "10000000", "ANON_RATE_LIMIT": "10000000",
             "WRITE_BUDGET": str(1 << 40), "PAYMENT_WORKERS": "0", "LOG_LEVEL": "warning",
             "WS_PER_USER": "10000"}  # fmt: skip


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Bench:
    """One mongod, the services under test, and where their logs go."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.node = MongoNode(free_port(), tmp / "mongo")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.mongo_url = ""

    def start_mongo(self) -> None:
        say("starting mongod")
        self.node.start()
        self.mongo_url = initiate([self.node])

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "MONGO_URL": self.mongo_url, "MONGO_DB": "bench", "HOST": "127.0.0.1", **extra}

    def start(self, name: str, command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # fmt: skip
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while not port_is_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; its log {log} ends with:\n{log.read_text()[-1500:]}")
            time.sleep(0.1)
        time.sleep(1)  # the workers finish starting after the port opens
        return process

    def murmuration(self, name: str, workers: int = 1, **settings: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        env = self.env(PORT=str(port), WORKERS=str(workers), **UNLIMITED, **settings)
        process = self.start(name, [sys.executable, "-m", "service"], port, env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").status_code != 200:  # its change stream is up: tokens are cached
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} is not healthy after 60 s: see {self.tmp / name}.log")
            time.sleep(0.2)
        time.sleep(2)  # with several workers, /health answers as soon as one of them is up
        return url, process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        terminate(process, 10)
        kill_group(process)

    def close(self) -> None:
        for process in self.processes:
            self.stop(process)
        self.node.stop()


def register(url: str, email: str) -> str:
    answer = httpx.post(f"{url}/auth/register", json={"email": email, "password": "bench pass", "name": "Bench"})
    answer.raise_for_status()
    return str(answer.json()["token"])


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    bench = Bench(tmp)
    results: dict[str, Any] = {"seconds": SECONDS, "cores": os.cpu_count()}
    try:
        wrk = debian.ensure("wrk")
        bench.start_mongo()
        url, ours = bench.murmuration("murmuration")
        token = register(url, "bench@example.com")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(20):
                http.post("/contacts", json={"name": f"contact {i}", "email": f"c{i}@example.com"})
        if "rest" in STAGES:
            results["rest"] = rest_stage(bench, wrk, url, token, ours)
        if "fanout" in STAGES:
            results["fanout"] = fanout_stage(bench, url, token, ours)
        if "readers" in STAGES:
            results["readers"] = readers_stage(bench, url, token, ours)
        if "idle" in STAGES:
            results["idle"] = idle_stage(bench, token)
        if "resume" in STAGES:
            say("resume: replay of 1,000 missed events")
            results["resume"] = resume(url, token)
        if "coediting" in STAGES:
            say(f"co-editing: {coediting.EDITORS} editors typing {coediting.RATE:g} characters a second each")
            # A server of its own, compacting every few seconds: the compactions happen during the typing.
            bench.stop(ours)
            url, ours = bench.murmuration("murmuration-coediting", **coediting.SETTINGS)
            pids = procs.group(ours.pid)
            results["coediting"] = coediting.run(
                url, lambda email: register(url, email), lambda emails: verify(bench.mongo_url, emails),
                lambda: procs.rss_kb(pids) * 1024,
            )  # fmt: skip
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    table = report.render(results)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(table + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


def rest_stage(bench: Bench, wrk: str, url: str, token: str, ours: subprocess.Popen[bytes]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    say(f"REST: wrk -c{rest.CONNECTIONS} -d{SECONDS}s against murmuration (1 worker)")
    target = rest.Target("murmuration", url, token, ours.pid)
    with profiled(ours.pid, "get-contacts"):
        get = rest.wrk(wrk, target, "GET", SECONDS, bench.tmp)
    figures["murmuration"] = {"get": get, "post": rest.wrk(wrk, target, "POST", SECONDS, bench.tmp)}
    url2, two = bench.murmuration("murmuration-2w", workers=2)
    say("REST: murmuration with WORKERS=2")
    figures["murmuration, 2 workers"] = rest.measure(wrk, rest.Target("2w", url2, token, two.pid), SECONDS, bench.tmp)
    bench.stop(two)
    peers = {
        "bare Sanic + PyMongo": ([sys.executable, "bench/peers/seed_sanic.py"], None),
        "FastAPI, same work": ([sys.executable, "-m", "uvicorn", "bench.peers.fastapi_app:app", "--host", "127.0.0.1",
                                "--loop", "uvloop", "--http", "httptools", "--no-access-log"], token),
    }  # fmt: skip
    seed_database(bench.mongo_url)
    for name, (command, auth) in peers.items():
        port = free_port()
        command = [*command, "--port", str(port)] if "uvicorn" in command else command
        # The bare app writes contacts the service's validator would refuse (no owner): it gets a
        # database of its own holding the same contacts.
        database = "seed" if auth is None else "bench"
        env = bench.env(PORT=str(port), WORKERS="1", MONGO_DB=database)
        peer = bench.start(name.split()[0].lower(), command, port, env)
        say(f"REST: wrk against {name}")
        figures[name] = rest.measure(wrk, rest.Target(name, f"http://127.0.0.1:{port}", auth, peer.pid), SECONDS,
                                     bench.tmp)  # fmt: skip
        bench.stop(peer)
    return figures


def verify(mongo_url: str, emails: list[str]) -> None:
    """Mark these bench accounts' addresses proven (as following the letter's link would)."""
    from pymongo import MongoClient

    with MongoClient(mongo_url, w="majority") as client:
        client.bench.users.update_many({"email": {"$in": emails}}, {"$set": {"email_verified": True}})


def seed_database(mongo_url: str) -> None:
    """The bench user's contacts, copied into the bare app's own database."""
    from pymongo import MongoClient

    with MongoClient(mongo_url, w="majority") as client:
        client.seed.contacts.insert_many(list(client.bench.contacts.find().sort("_id", -1).limit(20)))


def fanout(
    url: str, token: str, document: str, clients: int, pids: list[int], protocol: str = "murmuration",
    ws: str | None = None, tokens: Path | None = None, profile: str | None = None, writes: int | None = None,
    fields: str | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """One run of bench/fanout.py; None (and the reason said) if it failed."""
    writes = writes if writes is not None else (5 if clients > 1 else 50)
    command = [sys.executable, "bench/fanout.py", "--protocol", protocol, "--url", url, "--token", token,
               "--ws", ws or url.replace("http", "ws") + "/ws", "--document", document, "--clients", str(clients),
               "--writes", str(writes), "--rate", "2" if clients > 1 else "20",
               *(f"--pid={pid}" for pid in pids)]  # fmt: skip
    if tokens is not None:
        command += ["--tokens", str(tokens)]
    if fields is not None:
        command += ["--fields", fields]
    if profile is not None and PROFILE:
        command += ["--profile", str(spy_path(profile))]
    procs.settle()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        say(f"{protocol} with {clients} clients failed: {out.stderr[-1200:]}")
        return None
    if profile is not None:
        report_profile(profile)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def workers_first(leader: int) -> list[int]:
    """The service's processes, its (last started) worker first: fanout.py profiles the first."""
    return sorted(procs.group(leader), reverse=True)


def new_document(url: str, token: str, title: str) -> str:
    # A process that has just closed 10,000 sockets can take a while to answer.
    answer = httpx.post(f"{url}/documents", json={"title": title}, headers={"Authorization": f"Bearer {token}"},
                        timeout=120)  # fmt: skip
    answer.raise_for_status()
    return str(answer.json()["id"])


def fanout_stage(bench: Bench, url: str, token: str, ours: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for clients in FANOUT:
        say(f"fan-out: murmuration, {clients} clients on one document")
        doc = new_document(url, token, f"fan-out {clients}")
        found = fanout(url, token, doc, clients, workers_first(ours.pid), profile=f"fanout-{clients}")
        runs += [{"system": "murmuration", **found}] if found else []
    if 5000 in FANOUT or 10000 in FANOUT:
        url2, two = bench.murmuration("murmuration-2w-fanout", workers=2)
        biggest = max(FANOUT)
        say(f"fan-out: murmuration with WORKERS=2, {biggest} clients")
        found = fanout(url2, token, new_document(url, token, "fan-out 2w"), biggest, procs.group(two.pid))
        runs += [{"system": "murmuration, 2 workers", **found}] if found else []
        bench.stop(two)
    for name in PEERS:
        start = {"socketio": launch.start_socketio, "channels": launch.start_channels}[name]
        try:
            peer = start(bench.mongo_url, "bench", bench.tmp)
        except launch.PeerError as error:
            say(f"{name} is left out: {error}")
            continue
        try:
            for clients in FANOUT:
                say(f"fan-out: {name}, {clients} clients on one document")
                doc = new_document(url, token, f"{name} {clients}")
                pids = [pid for leader in peer.pids for pid in procs.group(leader)]
                found = fanout(url, token, doc, clients, pids, protocol=peer.protocol, ws=peer.ws_url)
                runs += [{"system": name, **found}] if found else []
        finally:
            peer.stop()
    return runs


# What a reader's page shows of a document (not its 5,000-entry roster); updated_at times the frames.
READER_FIELDS = "title,body,version,updated_at,updated_by"


def readers_stage(bench: Bench, url: str, token: str, ours: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """One document shared with READERS distinct users, each connected once with their own token."""
    say(f"many readers: seeding {READERS} users and sharing one document with them")
    doc = new_document(url, token, "many readers")
    tokens = readers.seed(bench.mongo_url, "bench", doc, READERS, bench.tmp / "tokens.txt")
    say(f"many readers: {READERS} distinct users on one document")
    return fanout(
        url, token, doc, READERS, workers_first(ours.pid), tokens=tokens, profile="readers", fields=READER_FIELDS
    )


def idle_stage(bench: Bench, token: str) -> dict[str, Any] | None:
    """IDLE authenticated sockets on a fresh process (memory is measured alone: an earlier stage's
    freed memory would be reused and flatter the figure)."""
    url, fresh = bench.murmuration("murmuration-idle")
    say(f"idle: {IDLE} authenticated sockets on a fresh process")
    try:
        return fanout(url, token, new_document(url, token, "idle"), IDLE, procs.group(fresh.pid), writes=0)
    finally:
        bench.stop(fresh)


def resume(url: str, token: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = url.replace("http", "ws") + "/ws"
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


def spy_path(name: str) -> Path:
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
def profiled(leader: int, name: str) -> Iterator[None]:
    """With BENCH_PROFILE=1, sample the service's worker with py-spy while the block runs."""
    if not PROFILE:
        yield
        return
    worker = max(procs.group(leader))  # the worker is started after the main process
    recording = spy.record(worker, spy_path(name))
    try:
        yield
    finally:
        spy.stop(recording)
    report_profile(name)


if __name__ == "__main__":
    sys.exit(main())
