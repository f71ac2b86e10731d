"""Start the fan-out peers for `make bench`, each on free ports, following the same MongoDB database.

    peer = start_channels(mongo_url, "bench", tmp)   # daphne + watch_documents + redis-server
    peer = start_socketio(mongo_url, "bench", tmp)   # node server.js
    ... fanout.py --protocol peer.protocol --ws peer.ws_url --pid ... (peer.pids)
    peer.stop()

Import it with the repository's root on sys.path (bench/run.py puts it there). Logs go to `tmp`.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import debian
from deploy.local.mongo import free_port, kill_group, port_is_open, terminate

HERE = Path(__file__).resolve().parent
CHANNELS = HERE / "channels_peer"
SOCKETIO = HERE / "socketio"
STARTUP_S = 60.0


class PeerError(RuntimeError):
    """A peer did not start; the message says what to look at or do."""


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Peer:
    """A running peer: its processes, where clients connect, and which pids are "the server"."""

    protocol: str  # fanout.py's --protocol
    ws_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        """Every process of the peer counts: its CPU and memory are what the peer costs."""
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        """Stop the newest first (the server before what it depends on)."""
        for process in reversed(self.processes):
            terminate(process, 10)
            kill_group(process)


def start_channels(mongo_url: str, db: str, tmp: Path) -> Peer:
    """redis-server, the change-stream watcher (a management command) and daphne serving the consumer."""
    redis_server = debian.ensure("redis-server")
    redis_port, daphne_port = free_port(), free_port()
    peer = Peer("channels", f"ws://127.0.0.1:{daphne_port}/ws/documents/")
    env = {**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": db, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "DJANGO_SETTINGS_MODULE": "docpeer.settings", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    try:
        say(f"channels: redis-server on port {redis_port}")
        # No snapshots or append-only file: the channel layer's messages are not worth keeping.
        redis = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(tmp)]  # fmt: skip
        _launch(peer, "redis", redis, tmp, env, ready=lambda _: port_is_open(redis_port))
        say("channels: change-stream watcher (manage.py watch_documents)")
        watcher = [sys.executable, "manage.py", "watch_documents"]
        _launch(peer, "watcher", watcher, tmp, env, ready=lambda log: b"watching" in log.read_bytes(), cwd=CHANNELS)
        say(f"channels: daphne on port {daphne_port}")
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(daphne_port), "docpeer.asgi:application"]
        _launch(peer, "daphne", daphne, tmp, env, ready=lambda _: port_is_open(daphne_port), cwd=CHANNELS)
    except BaseException:
        peer.stop()
        raise
    return peer


def start_socketio(mongo_url: str, db: str, tmp: Path) -> Peer:
    """One Node process: Socket.IO and the change stream (installed with `npm ci` the first time)."""
    node = _install_socketio()
    port = free_port()
    peer = Peer("socketio", f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
    env = {**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": db, "PORT": str(port), "HOST": "127.0.0.1",
           "NODE_ENV": "production"}  # fmt: skip
    say(f"socket.io: node server.js on port {port}")
    try:
        _launch(peer, "node", [node, "server.js"], tmp, env, ready=lambda _: port_is_open(port), cwd=SOCKETIO)
    except BaseException:
        peer.stop()
        raise
    return peer


def _install_socketio() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PeerError("node and npm are needed for the Socket.IO peer: install Node.js 20.19+ (with npm)")
    if not (SOCKETIO / "node_modules").is_dir():
        say("socket.io: npm ci (first run only)")
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(SOCKETIO)],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            raise PeerError(f"npm ci in {SOCKETIO} failed:\n{result.stderr[-1500:]}\nFix that, then run again.")
    return node


def _launch(
    peer: Peer,
    name: str,
    command: list[str],
    tmp: Path,
    env: dict[str, str],
    ready: Callable[[Path], bool],
    cwd: Path | None = None,
) -> None:
    """Start `command` in its own session (so stop() can kill what it forks), then wait until `ready(log)`."""
    log = tmp / f"{peer.protocol}-{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=cwd or tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_open_files_to_hard_limit)  # fmt: skip
    peer.processes.append(process)
    peer.logs.append(log)
    deadline = time.monotonic() + STARTUP_S
    while not ready(log):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:]
            raise PeerError(f"{name} did not start ({' '.join(command[:4])} ...); fix what its log {log} says "
                            f"and run again. The log ends with:\n{tail}")  # fmt: skip
        time.sleep(0.1)


def _open_files_to_hard_limit() -> None:
    """In the child: a socket per client, and 5,000 clients are past the usual soft limit of 1,024 files."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
